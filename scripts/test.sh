#!/usr/bin/env bash
# Installs every test dependency (Debian and Python packages), then runs the
# whole test suite. Arguments go to pytest. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real clients and peers the tests drive.
DEBIAN_PACKAGES=(skopeo podman buildah docker-registry uidmap wrk curl apache2-utils)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
