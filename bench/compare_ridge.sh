#!/usr/bin/env bash
# Exact kernel ridge at scale, ntkit beside neural-tangents' predict (t = inf) and NumPy on the
# same float64 kernel (the FCN NTK of the first N Fashion-MNIST training images), same threads.
#
#   bench/compare_ridge.sh [BUILD_DIR]      (default: build; N=20000 THREADS=2 in the environment)
#
# Needs 3 x 8·N² bytes of memory at most (one program at a time; 9.6 GB at N = 20,000) and
# 8·N² bytes of temporary disk for the kernel handed to the peers.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
n="${N:-20000}" threads="${THREADS:-2}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
/usr/bin/time -f "ntkit peak RSS %M KB, wall %e s" "$build/bench/ridge_scale" "$n" "$threads" "$tmp/k.npy"
/usr/bin/python3 -c "
import gzip, numpy as np
raw = gzip.open('/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz').read()[8:]
np.save('$tmp/labels.npy', np.frombuffer(raw, dtype=np.uint8)[:$n])"
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
/usr/bin/time -f "numpy peak RSS %M KB" /usr/bin/python3 "$here/nt_ridge.py" "$tmp/k.npy" "$tmp/labels.npy" --peer numpy
venv_py="$here/../build-nt/venv/bin/python"
if [[ -x "$venv_py" ]]; then
  XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=$threads" \
    taskset -c "0-$((threads - 1))" /usr/bin/time -f "neural-tangents peak RSS %M KB" \
    "$venv_py" "$here/nt_ridge.py" "$tmp/k.npy" "$tmp/labels.npy" --peer nt
else
  echo "neural-tangents: not installed (scripts/install-nt.sh); skipped"
fi
