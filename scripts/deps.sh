#!/usr/bin/env bash
# Installs the Debian packages drover needs to build and test, only those that are missing.
# Idempotent; safe to run on every build. Usage: scripts/deps.sh [extra-package ...]
# OPTIONAL packages (Debian's chromium, for the dashboard's browser tests) are installed when
# they can be; when they cannot, the run goes on and the tests that need them say they skipped.
set -euo pipefail

PKGS=(cmake ninja-build pkg-config gcc clang libclang-rt-14-dev clang-format
      libuv1-dev node-llhttp libjson-c-dev libyaml-dev libsqlite3-dev libpq-dev postgresql-15 postgresql-client-15
      libcmocka-dev libssl-dev openssl python3 python3-pytest curl tmux haproxy "$@")

OPTIONAL=(chromium)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
opt_missing=()
for p in "${OPTIONAL[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        opt_missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ] && [ ${#opt_missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
    $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#opt_missing[@]} -gt 0 ]; then
    echo "deps: installing ${opt_missing[*]} (optional)" >&2
    $SUDO apt-get install -y -qq --no-install-recommends "${opt_missing[@]}" >/dev/null ||
        echo "deps: could not install ${opt_missing[*]}; the tests that need it will skip" >&2
fi
