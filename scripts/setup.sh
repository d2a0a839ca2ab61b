#!/usr/bin/env bash
# Set up softshield on a fresh Debian machine: system packages, a virtual environment with the
# project and its test tools, the PKCS#11 library, and (unless --no-demo) the demo.
#   bash scripts/setup.sh            install, build, run the demo
#   bash scripts/setup.sh --no-demo  install and build only (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential python3-venv python3-dev libssl-dev softhsm2 opencryptoki opensc gnutls-bin p11-kit
              libengine-pkcs11-openssl libnss3-tools openssh-client openssh-server default-jdk-headless)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# OpenSSL 3's PKCS#11 provider (tests sign through it): Debian 12 has it in bookworm-backports only.
if ! dpkg-query -W -f='${Status}' pkcs11-provider 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    suite=()
    if [ -z "$(apt-cache policy pkcs11-provider 2>/dev/null | grep 'Candidate:' | grep -v '(none)')" ] &&
       grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" |
            $SUDO tee /etc/apt/sources.list.d/softshield-bookworm-backports.list >/dev/null
        $SUDO apt-get update -qq
        suite=(-t bookworm-backports)
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${suite[@]}" pkcs11-provider >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
make --no-print-directory build
# libsoftshield-pkcs11.so forwards from hosts whose Python is not the module's: one venv per other
# Python version the tests drive (.venv312, .venv313) with python-pkcs11 and what its own test suite
# needs. A missing version is skipped here; the tests skip it, or fail under CI.
for version in 3.12 3.13; do
    venv=".venv${version//./}"
    py=""
    if "python$version" -c "" 2>/dev/null; then
        py="python$version"
    else  # a pyenv shim answers only for the selected version: use the installed interpreter itself
        for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version"*/bin/"python$version"; do
            [ -x "$candidate" ] && py="$candidate"
        done
    fi
    if [ -z "$py" ]; then
        echo "setup: python$version not found; skipping $venv (tests/hardserver skip that version)"
        continue
    fi
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q python-pkcs11 pytest parameterized cryptography >/dev/null
done
bash scripts/fetch_upstream_tests.sh >/dev/null
if [ "${1:-}" != "--no-demo" ]; then
    make --no-print-directory demo
fi
