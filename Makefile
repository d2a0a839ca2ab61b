# softshield: `make` builds the PKCS#11 library; `make test`, `make bench`, `make demo`, `make fuzz`.
PY      ?= .venv/bin/python
SO      := build/libsoftshield-pkcs11.so
SOURCES := $(wildcard native/*) pkcs11_shim/build.py
# The C-only client library (client mode, talks to `softshield hardserver`): generated from the same
# function list, with the mechanism -> parameter-layout table taken from the mechanism registry.
CLIENT  := build/libsoftshield-client.so
CLIENT_SOURCES := $(wildcard native/client/*) native/functions.txt native/pkcs11_types.h \
                  pkcs11_shim/client_build.py pkcs11_shim/build.py pkcs11_shim/hardserver/layouts.py \
                  $(wildcard pkcs11_shim/mechanisms/*.py) pkcs11_shim/attributes/codecs.py

.PHONY: all build test bench demo fuzz clean

all: build

build: $(SO) $(CLIENT)

$(SO): $(SOURCES)
	$(PY) -m pkcs11_shim.build --out build

$(CLIENT): $(CLIENT_SOURCES)
	$(PY) -m pkcs11_shim.client_build --out build

test: $(SO) $(CLIENT)
	$(PY) -m pytest -q

bench: $(SO)
	$(PY) -m pytest bench --benchmark-enable --benchmark-max-time=0.5 -q -p no:cacheprovider
	$(PY) bench/floorprobe.py 10 500 > build/bench/floor.md && cat build/bench/floor.md
	mkdir -p docs/bench && cp build/bench/*.png build/bench/table.md build/bench/floor.md build/bench/results.json docs/bench/

demo: $(SO)
	$(PY) -m softshield_cli.demo

fuzz: $(SO)
	$(PY) tests/reliability/fuzz_cabi.py run --examples $${FUZZ_EXAMPLES:-5000}
	$(PY) tests/reliability/opstate_machine.py run --kind all --steps $${OPSTATE_STEPS:-2000}

clean:
	rm -rf build
