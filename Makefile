# softshield: `make` builds the PKCS#11 library; `make test`, `make bench`, `make demo`, `make fuzz`.
PY      ?= .venv/bin/python
SO      := build/libsoftshield-pkcs11.so
SOURCES := $(wildcard native/*) pkcs11_shim/build.py

.PHONY: all build test bench demo fuzz clean

all: build

build: $(SO)

$(SO): $(SOURCES)
	$(PY) -m pkcs11_shim.build --out build

test: $(SO)
	$(PY) -m pytest -q

bench: $(SO)
	$(PY) -m pytest bench --benchmark-enable --benchmark-max-time=0.5 -q -p no:cacheprovider
	mkdir -p docs/bench && cp build/bench/*.png build/bench/table.md build/bench/results.json docs/bench/

demo: $(SO)
	$(PY) -m softshield_cli.demo

clean:
	rm -rf build
