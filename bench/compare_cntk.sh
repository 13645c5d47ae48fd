#!/usr/bin/env bash
# Exact CNTK-GAP (3 x [Conv 3x3 SAME, Relu], GlobalAvgPool, Dense) on Fashion-MNIST, ntkit vs JAX
# neural-tangents on this machine, same thread count.
#
#   bench/compare_cntk.sh [BUILD_DIR]        (default: build)
#
# Environment: N (default 100) images for ntkit (symmetric: N(N+1)/2 pairs plus N self pairs);
# NT_N (default 8) for neural-tangents, which computes all N² pairs of a batch in memory
# (N² x 784² per array); THREADS (default 2). neural-tangents runs from scripts/install-nt.sh's
# venv and is skipped when that is missing. Prints, per side: seconds, pixel-pair-layer updates
# per second per core (pairs x 784² x 3 layers), and the ratio ntkit/neural-tangents.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
n="${N:-100}" nt_n="${NT_N:-8}" threads="${THREADS:-2}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
calc() { /usr/bin/python3 -c "print($1)"; }

/usr/bin/python3 - "$tmp" "$n" "$nt_n" <<'PY'
import gzip, sys
import numpy as np
tmp, n, nt_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
raw = gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").read()[16:]
x = np.frombuffer(raw, dtype=np.uint8)[: max(n, nt_n) * 784].reshape(-1, 28, 28, 1) / 255.0
np.save(f"{tmp}/x.npy", x[:n]); np.save(f"{tmp}/x_nt.npy", x[:nt_n])
PY
net="Conv(1, 3, padding=SAME, W_std=1.4142135623730951), Relu, Conv(1, 3, padding=SAME, W_std=1.4142135623730951), Relu, Conv(1, 3, padding=SAME, W_std=1.4142135623730951), Relu, GlobalAvgPool, Dense(1)"
updates_per_pair=$((784 * 784 * 3))
printf "%-34s %10s %22s\n" "run" "seconds" "M updates/s per core"
declare -A rate
for dtype in float32 float64; do
  start=$(date +%s.%N)
  "$build/ntk" kernel --net "$net" --x1 "$tmp/x.npy" --dtype "$dtype" --threads "$threads" -q -o "$tmp/k_$dtype.npy"
  secs=$(calc "$(date +%s.%N) - $start")
  pairs=$((n * (n + 1) / 2 + n))
  rate[$dtype]=$(calc "$pairs * $updates_per_pair / $secs / $threads / 1000000")
  printf "%-34s %10.2f %22.1f\n" "ntkit $dtype, $n images" "$secs" "${rate[$dtype]}"
done
venv_py="$here/../build-nt/venv/bin/python"
if [[ -x "$venv_py" ]]; then
  out=$(XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=$threads" \
        taskset -c "0-$((threads - 1))" "$venv_py" "$here/nt_cntk.py" --x "$tmp/x_nt.npy" --n "$nt_n" --dtype float32)
  secs=$(echo "$out" | sed -E 's/.* ([0-9.]+) s,.*/\1/')
  nt_rate=$(calc "$nt_n * $nt_n * $updates_per_pair / $secs / $threads / 1000000")
  printf "%-34s %10.2f %22.1f\n" "neural-tangents float32, $nt_n images" "$secs" "$nt_rate"
  printf "ratio ntkit/neural-tangents (float32, per core): %.1fx\n" "$(calc "${rate[float32]} / $nt_rate")"
else
  echo "neural-tangents: not installed (scripts/install-nt.sh); skipped"
fi
echo "neural-tangents' published CPU figure: 112.9 ms per entry, 21 layers x 1024² pixel pairs, 56 cores = 3.5 M updates/s per core"
