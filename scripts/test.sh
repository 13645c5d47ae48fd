#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the C++ suite (ctest) and the Python
# oracles (pytest): PyTorch, a NumPy transcription of Arora et al.'s CNTK, and JAX neural-tangents
# when it can be installed from PyPI (scripts/install-nt.sh; otherwise that tier is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
scripts/build.sh build
scripts/install-nt.sh
(cd build && ctest --output-on-failure -j"$(nproc)")
NTK_BIN="$PWD/build/ntk" /usr/bin/python3 -m pytest -q tests/python
