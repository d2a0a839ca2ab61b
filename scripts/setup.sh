#!/usr/bin/env bash
# Set up softshield on a fresh Debian machine: system packages, a virtual environment with the
# project and its test tools, the PKCS#11 library, and (unless --no-demo) the demo.
#   bash scripts/setup.sh            install, build, run the demo
#   bash scripts/setup.sh --no-demo  install and build only (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential python3-venv python3-dev softhsm2 opensc gnutls-bin p11-kit
              libengine-pkcs11-openssl libnss3-tools)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
make --no-print-directory build
bash scripts/fetch_upstream_tests.sh >/dev/null
if [ "${1:-}" != "--no-demo" ]; then
    make --no-print-directory demo
fi
