#!/usr/bin/env bash
# The main job: `ntk demo`, the three papers' claims on Fashion-MNIST measured on this machine
# (ntkit.demo; about 5 minutes on 2 cores once built). Installs what is missing: the Debian
# packages (scripts/install-deps.sh python), the package ntkit into build-py/venv (pip install .,
# scripts/install-python.sh) and, when PyPI answers, JAX neural-tangents into build-nt/venv
# (scripts/install-nt.sh: optional, the demo leaves that peer out without it).
#
#   scripts/run.sh [DIR] [demo options...]     (DIR default ntk-demo-report; e.g. scripts/run.sh out --full)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-ntk-demo-report}
shift || true
py=$(scripts/install-python.sh build-py/venv)
scripts/install-nt.sh
nt=()
if [ "$(cut -d: -f1 build-nt/status 2>/dev/null)" = ok ]; then
  nt=(--nt-python "$PWD/build-nt/venv/bin/python")
fi
"$(dirname "$py")/ntk" demo --out "$out" "${nt[@]}" "$@"
