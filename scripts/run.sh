#!/usr/bin/env bash
# The main job: `ntk demo`, the three papers' claims on Fashion-MNIST measured on this machine
# (ntkit.demo; about 3.5 minutes on 2 cores once built). Installs what is missing: the Debian
# packages (scripts/install-deps.sh python), the package ntkit into build-py/venv (pip install .,
# scripts/install-python.sh) and, when PyPI answers, JAX neural-tangents into build-nt/venv
# (scripts/install-nt.sh: optional, the demo leaves that peer out without it).
#
#   scripts/run.sh [DIR] [demo options...]     (DIR default ntk-demo-report, relative to where you
#                                               run this; e.g. scripts/run.sh out --full, or
#                                               scripts/run.sh --quick)
set -euo pipefail
here=$PWD
out=ntk-demo-report
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
  out=$1
  shift
fi
[[ $out == /* ]] || out=$here/$out
cd "$(dirname "$0")/.."
py=$(scripts/install-python.sh build-py/venv)
ntk=$PWD/$(dirname "$py")/ntk
scripts/install-nt.sh
nt=()
if [ "$(cut -d: -f1 build-nt/status 2>/dev/null)" = ok ]; then
  nt=(--nt-python "$PWD/build-nt/venv/bin/python")
fi
cd "$here"  # the demo's own relative paths (--data) as the caller wrote them
"$ntk" demo --out "$out" "${nt[@]}" "$@"
