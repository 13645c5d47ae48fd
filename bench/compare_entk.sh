#!/usr/bin/env bash
# eNTK, ntkit vs the PyTorch functorch peer (../shared/bench/peers/torch_entk.py), same machine,
# same threads, same OpenBLAS kernels (OPENBLAS_CORETYPE as ntkit selects it, or as you set it).
#
#   bench/compare_entk.sh [BUILD_DIR]     (default: build; THREADS default 2)
#
# Prints config, ntkit seconds and peak RSS, peer seconds and peak RSS, speed-up, and the GFLOP/s
# of the 1000-example run against the SGEMM peak measured in the same run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
threads="${THREADS:-2}"
peer="$here/../../shared/bench/peers/torch_entk.py"
ntk="$build/ntk"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
[ -x "$ntk" ] || { echo "error: no ntk binary at $ntk; build first" >&2; exit 1; }
[ -f "$peer" ] || { echo "error: peer script not found at $peer" >&2; exit 1; }

# The peer links Debian's OpenBLAS too: give it the kernels ntkit selects for this CPU.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi

mlp="Dense(%d, b_std=0), Relu, Dense(%d, b_std=0), Relu, Dense(10, b_std=0)"
cnn="Conv(%d, 3, padding=SAME, b_std=0), Relu, Conv(%d, 3, padding=SAME, b_std=0), Relu, GlobalAvgPool, Dense(10, b_std=0)"

# ntk_run ARCH WIDTH N MODE -> "seconds peak_rss_mb" (median of 3 runs of the kernel alone is
# what the Google Benchmark figures give; here the whole command, parameters and input included).
ntk_run() {
  local arch=$1 width=$2 n=$3 mode=$4 spec shape
  if [ "$arch" = mlp ]; then spec=$(printf "$mlp" "$width" "$width"); shape="784"; else spec=$(printf "$cnn" "$width" "$width"); shape="28,28,1"; fi
  /usr/bin/python3 -c "import numpy as np; s=[$n]+[int(v) for v in '$shape'.split(',')]; np.save('$tmp/x.npy', np.random.default_rng(0).standard_normal(s).astype(np.float32))"
  "$ntk" init --net "$spec" --parameterization standard --input-shape "$shape" -q -o "$tmp/p.npz"
  local best=""
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$ntk" entk --net "$spec" --parameterization standard --params "$tmp/p.npz" \
      --x1 "$tmp/x.npy" --mode "$mode" --threads "$threads" -q -o "$tmp/k.npy"
    read -r sec kb < "$tmp/time"
    best=$(printf "%s\n%s %s\n" "$best" "$sec" "$((kb / 1024))" | sed '/^$/d' | sort -n | head -1)
  done
  echo "$best"
}

peer_run() {  # ARCH WIDTH N METHOD MODE -> "seconds peak_rss_mb"
  OPENBLAS_NUM_THREADS="$threads" /usr/bin/python3 "$peer" --arch "$1" --width "$2" --n "$3" --method "$4" --mode "$5" \
    --threads "$threads" | /usr/bin/python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(d['seconds'], d['peak_rss_mb'])"
}

printf "%-26s %12s %10s %12s %10s %9s\n" config ntkit_s ntkit_MB peer_s peer_MB speedup
row() {  # LABEL ARCH WIDTH N MODE PEER_METHOD PEER_MODE
  read -r ns nm < <(ntk_run "$2" "$3" "$4" "$5")
  read -r ps pm < <(peer_run "$2" "$3" "$4" "$6" "$7")
  printf "%-26s %12s %10s %12s %10s %8.1fx\n" "$1" "$ns" "$nm" "$ps" "$pm" "$(awk -v a="$ps" -v b="$ns" 'BEGIN { print a / b }')"
}
row "mlp W=512 N=64 full (jc)" mlp 512 64 full jc full
row "mlp W=512 N=64 full (vp)" mlp 512 64 full vp full
row "mlp W=2048 N=128 pntk" mlp 2048 128 pntk pntk full
row "cnn W=64 N=32 full (jc)" cnn 64 32 full jc full

echo
echo "Kernel-only timings and GFLOP/s (Google Benchmark, median of 3):"
OPENBLAS_NUM_THREADS=1 "$build/bench/ntk_bench" --benchmark_filter='Entk.*_sd|Sgemm/4096' --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true 2>/dev/null | grep -E "median|Benchmark"
