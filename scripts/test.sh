#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the C++ suite (ctest) and the Python
# oracles against PyTorch (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
scripts/build.sh build
(cd build && ctest --output-on-failure -j"$(nproc)")
NTK_BIN="$PWD/build/ntk" /usr/bin/python3 -m pytest -q tests/python
