# softshield: `make` builds the PKCS#11 library; `make test`, `make bench`, `make demo`, `make fuzz`.
PY      ?= .venv/bin/python
# The in-process module (cffi embedding); hosts load it through the front end below.
EMBEDDED := build/libsoftshield-embedded.so
SOURCES := $(wildcard native/*) pkcs11_shim/build.py pkcs11_shim/constants.py
# The library users load (front end: embedded or forwarded per process) and the C-only client
# library (always forwarded to `softshield hardserver`): generated from the same function list, with
# the mechanism -> parameter-layout table taken from the mechanism registry.
SO      := build/libsoftshield-pkcs11.so
CLIENT  := build/libsoftshield-client.so
CLIENT_SOURCES := $(wildcard native/client/*) $(wildcard native/front/*) native/functions.txt native/pkcs11_types.h \
                  pkcs11_shim/client_build.py pkcs11_shim/build.py pkcs11_shim/constants.py pkcs11_shim/hardserver/layouts.py \
                  $(wildcard pkcs11_shim/mechanisms/*.py) pkcs11_shim/attributes/codecs.py
# The hardserver's C per-call path (frame decode, checks, the module's C entry points, reply), generated
# from the same function list and parameter layouts as the client library.
SERVE   := build/libsoftshield-serve.so
SERVE_SOURCES := $(wildcard native/server/*) native/client/layouts.c native/client/ss_client.h native/functions.txt \
                 native/pkcs11_types.h pkcs11_shim/server_build.py pkcs11_shim/build.py pkcs11_shim/constants.py \
                 pkcs11_shim/functions.py pkcs11_shim/hardserver/layouts.py pkcs11_shim/hardserver/routes.py \
                 pkcs11_shim/hardserver/visibility.py $(wildcard pkcs11_shim/mechanisms/*.py) pkcs11_shim/attributes/codecs.py

.PHONY: all build test bench demo fuzz clean

all: build

build: $(EMBEDDED) $(SO) $(CLIENT) $(SERVE)
	@# Start-up reads compiled modules: write them even where PYTHONDONTWRITEBYTECODE is set (a stale
	@# .pyc is safe, Python checks it against the source).
	@$(PY) -m compileall -q pkcs11_shim emulator softshield_cli

$(EMBEDDED): $(SOURCES)
	$(PY) -m pkcs11_shim.build --out build

$(SO) $(CLIENT) &: $(CLIENT_SOURCES)
	$(PY) -m pkcs11_shim.client_build --out build

$(SERVE): $(SERVE_SOURCES)
	$(PY) -m pkcs11_shim.server_build --out build

test: build
	$(PY) -m pytest -q

bench: build
	$(PY) -m pytest bench --benchmark-enable --benchmark-max-time=0.5 -q -p no:cacheprovider
	$(PY) bench/floorprobe.py 10 500 > build/bench/floor.md && cat build/bench/floor.md
	@# Start-up: one process per run, as a test suite that starts a tool per test pays it.
	$(PY) bench/startprobe.py --header --label "softshield embedded" > build/bench/startup.md
	$(PY) bench/startprobe.py --label "softshield forwarded (server running)" --env SOFTSHIELD_MODE=hardserver >> build/bench/startup.md
	$(PY) bench/startprobe.py /usr/lib/softhsm/libsofthsm2.so --label SoftHSM2 >> build/bench/startup.md
	cat build/bench/startup.md
	mkdir -p docs/bench && cp build/bench/*.png build/bench/table.md build/bench/floor.md build/bench/startup.md build/bench/results.json docs/bench/
	$(PY) bench/splice_docs.py

demo: build
	$(PY) -m softshield_cli.demo

fuzz: build
	$(PY) tests/reliability/fuzz_cabi.py run --examples $${FUZZ_EXAMPLES:-5000}
	$(PY) tests/reliability/opstate_machine.py run --kind all --steps $${OPSTATE_STEPS:-2000}

clean:
	rm -rf build

# p11-kit's module file naming this checkout's library by its real path, rewritten when the checkout
# moves (`softshield p11-kit install` puts it where p11-kit reads it).
P11KIT_MODULE := build/p11-kit/softshield.module

build: $(P11KIT_MODULE)

$(P11KIT_MODULE): data/p11-kit/softshield.module.in p11kit-module-path
	@mkdir -p $(@D)
	@sed 's|@LIBRARY@|$(abspath $(SO))|' $< > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@ && echo "wrote $@"; fi

.PHONY: p11kit-module-path
