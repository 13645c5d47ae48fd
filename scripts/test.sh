#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the C++ suite (ctest), then the Python
# package (`pip install .` into build-py/venv, scripts/install-python.sh) and the Python suite
# (pytest, in that venv): the package's API, PyTorch, a NumPy transcription of Arora et al.'s CNTK,
# and JAX neural-tangents when it can be installed from PyPI (scripts/install-nt.sh; otherwise
# that tier is skipped).
# Fails when a tier that should run ran nothing or was skipped: ctest with no tests or a C++ test
# skipped other than by design (tests/cpp/expected_skips.txt), a Python
# test module with a skipped test or none run (tests/python/check_tiers.py), the neural-tangents
# tier unless PyPI was unreachable (build-nt/status, written by scripts/install-nt.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
# Explicit, so that a build directory configured without them (scripts/run.sh configures `build`
# with -DNTK_BUILD_TESTS=OFF) still gets the tests and benchmarks.
scripts/build.sh build -DNTK_BUILD_TESTS=ON -DNTK_BUILD_BENCH=ON
scripts/install-nt.sh
# --no-tests=error: "No tests were found!!!" is a failure, not a pass.
# A test that skipped (GTEST_SKIP) checked nothing: only the by-design skips of
# tests/cpp/expected_skips.txt may.
rm -f build/ctest-junit.xml
(cd build && ctest --output-on-failure --no-tests=error -j"$(nproc)" --output-junit ctest-junit.xml)
/usr/bin/python3 tests/python/check_tiers.py --ctest build/ctest-junit.xml
py=$(scripts/install-python.sh build-py/venv)
report=build/pytest-junit.xml
rm -f "$report"
NTK_BIN="$PWD/build/ntk" "$py" -m pytest -q -rs --junitxml="$report" tests/python
nt_status=$(cut -d: -f1 build-nt/status 2>/dev/null || echo missing)
/usr/bin/python3 tests/python/check_tiers.py "$report" --tests-dir tests/python --nt-status "${nt_status:-missing}"
