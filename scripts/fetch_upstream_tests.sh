#!/usr/bin/env bash
# Fetch the test suite of the python-pkcs11 release we depend on (its source distribution) into
# build/upstream/python-pkcs11/, for tests/pkcs11/test_upstream_python_pkcs11.py.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('python-pkcs11'))")
dest=build/upstream/python-pkcs11-$version
[ -d "$dest/tests" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --no-binary for this one package only: its build dependencies may come as wheels.
.venv/bin/python -m pip download -q --no-deps --no-binary python-pkcs11 "python-pkcs11==$version" -d "$tmp" 2>/dev/null
mkdir -p build/upstream
tar -xzf "$tmp"/python_pkcs11-"$version".tar.gz -C "$tmp"
rm -rf "$dest"
mkdir -p "$dest"
cp -r "$tmp/python_pkcs11-$version/tests" "$dest/tests"
echo "$dest"
