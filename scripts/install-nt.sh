#!/usr/bin/env bash
# Installs JAX neural-tangents (CPU) into build-nt/venv, for the optional oracle tier
# tests/python/test_nt_kernels.py. Optional: any failure (no network, no venv module) prints a
# message and exits 0, and the tests then skip. Idempotent: does nothing if the venv already
# imports neural-tangents. Usage: scripts/install-nt.sh
#
# The outcome is written to build-nt/status, one line whose first word is
#   ok       the venv imports neural-tangents: the tier must run (scripts/test.sh fails if it skips);
#   offline  an install step failed and PyPI does not answer (pip cannot list neural-tangents'
#            versions): the tier may be skipped;
#   failed   anything else (no venv module, PyPI answered but an install step or the import
#            failed): scripts/test.sh fails.
#
# Pins: neural-tangents is archived; 0.6.5 (its last release, Dec 2023) imports JAX internals
# (jax.core.*, jax.util) that later JAX releases deprecate or remove, so JAX is pinned to that
# month's jax/jaxlib 0.4.23, built against NumPy 1.x.
# neural-tangents declares tensorflow + tf2jax as dependencies, but only its experimental TF
# bridge uses them: it is installed with --no-deps and tests/python/nt_kernel.py imports
# neural_tangents.stax without the package's __init__ (which pulls in that bridge). That saves a
# ~600 MB TensorFlow install.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=build-nt/venv
py=$venv/bin/python
status=build-nt/status
check() { [ -x "$py" ] && "$py" tests/python/nt_kernel.py --check >/dev/null 2>&1; }
record() { mkdir -p build-nt && echo "$*" > "$status.tmp" && mv "$status.tmp" "$status"; }
# Whether PyPI (the index pip is configured with) answers, asked through pip itself.
pypi_answers() { "$py" -m pip index versions neural-tangents --disable-pip-version-check >/dev/null 2>&1; }
rm -f "$status"  # a stale outcome must not outlive this run
fail() {
  if [ "${2:-}" = pip ] && ! pypi_answers; then
    record "offline: $1"
    echo "install-nt: $1; PyPI does not answer: the neural-tangents tests will be skipped" >&2
  else
    record "failed: $1"
    echo "install-nt: $1; the neural-tangents tier cannot run (scripts/test.sh will fail)" >&2
  fi
  exit 0
}

if check; then record "ok: already installed in $venv"; echo "install-nt: neural-tangents already installed in $venv"; exit 0; fi

# (Re)create the venv unless it has a working pip (a half-made one is cleared).
"$py" -m pip --version >/dev/null 2>&1 || /usr/bin/python3 -m venv --clear "$venv" \
  || fail "could not create $venv (python3-venv missing?)"
pip=("$py" -m pip install -q --disable-pip-version-check)
"${pip[@]}" numpy==1.26.4 scipy==1.11.4 ml_dtypes==0.3.2 opt_einsum==3.3.0 frozendict==2.4.0 \
    jax==0.4.23 jaxlib==0.4.23 || fail "pip could not install jax/jaxlib (no network?)" pip
"${pip[@]}" --no-deps neural-tangents==0.6.5 || fail "pip could not install neural-tangents" pip
check || fail "neural-tangents installed but does not import (see: $py tests/python/nt_kernel.py --check)"
record "ok: neural-tangents 0.6.5 + jax 0.4.23 installed in $venv"
echo "install-nt: neural-tangents 0.6.5 + jax 0.4.23 (CPU) installed in $venv"
