#!/usr/bin/env bash
# Builds and installs the Python package ntkit with `pip install .` (scikit-build-core + nanobind,
# fetched from PyPI into pip's isolated build environment) into a virtual environment made from
# Debian's python3 with --system-site-packages, so that it sees Debian's NumPy, PyTorch, pytest
# and tqdm. Usage: scripts/install-python.sh [VENV]   (default .venv)
# Rebuilds incrementally (scikit-build-core's build directory build-py/). Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
scripts/install-deps.sh python
"$venv/bin/python" -m pip --version >/dev/null 2>&1 || /usr/bin/python3 -m venv --clear --system-site-packages "$venv"
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  "$venv/bin/python" -m pip install --disable-pip-version-check -q . >&2
# ntkit.dask's engine and store (PyPI's: Debian's are years behind), pinned to the releases that
# keep Debian's NumPy 1.24 (which Debian's PyTorch is built against).
"$venv/bin/python" -m pip install --disable-pip-version-check -q "dask[distributed]>=2024.8,<2025" "zarr>=2.18,<3" >&2
echo "$venv/bin/python"
