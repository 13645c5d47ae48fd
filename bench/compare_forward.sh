#!/usr/bin/env bash
# Forward pass, ntkit vs PyTorch, same machine, same thread count.
#
#   bench/compare_forward.sh [BUILD_DIR]        (default: build)
#
# Environment: THREADS (default 2) sets ntkit's thread count (NTK_NUM_THREADS, read by ntk_bench)
# and PyTorch's (torch.set_num_threads, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS); REPS (default 5)
# Google Benchmark repetitions (median reported);
# TORCH_REPEATS (default 15) timed calls per config on the PyTorch side (median reported);
# PYTHON (default /usr/bin/python3, which has Debian's python3-torch). Both sides use Debian's
# OpenBLAS, which falls back to its Prescott (SSE3) kernels, several times slower, on CPUs whose
# model it does not know (common in VMs). ntkit then selects kernels by CPU features itself; so
# that PyTorch gets the same ones, OPENBLAS_CORETYPE is set here the same way unless you set it.
# The table header shows the core in effect.
# Prints a table: config, ntkit median ms, torch median ms, ratio torch/ntkit (> 1: ntkit faster),
# ntkit GFLOP/s (analytic Dense/Conv FLOP count, see bench/bench_forward.cpp).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
threads="${THREADS:-2}"
reps="${REPS:-5}"
torch_repeats="${TORCH_REPEATS:-15}"
python="${PYTHON:-/usr/bin/python3}"

bench=""
for candidate in "$build/bench/ntk_bench" "$build/ntk_bench"; do
  if [[ -x "$candidate" ]]; then bench="$candidate"; break; fi
done
if [[ -z "$bench" ]]; then
  echo "error: no ntk_bench under $build; build it with: cmake --build $build --target ntk_bench" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

export NTK_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
  flags="$(grep -m1 '^flags' /proc/cpuinfo || true)"
  if [[ " $flags " == *" avx512f "* && " $flags " == *" avx512bw "* && " $flags " == *" avx512vl "* ]]; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif [[ " $flags " == *" avx2 "* && " $flags " == *" fma "* ]]; then
    export OPENBLAS_CORETYPE=Haswell
  fi
fi

echo "ntkit: $bench (threads $threads, $reps repetitions)" >&2
OPENBLAS_VERBOSE=2 "$bench" --benchmark_filter='^BM_Forward/' --benchmark_repetitions="$reps" \
  --benchmark_report_aggregates_only=true --benchmark_out="$tmp/ntk.json" --benchmark_out_format=json \
  > "$tmp/ntk.log" 2>&1 || { cat "$tmp/ntk.log" >&2; exit 1; }
cat "$tmp/ntk.log" >&2
core="$(sed -n 's/^Core: *//p' "$tmp/ntk.log" | head -n1)"

echo "torch: $here/torch_forward.py (threads $threads, $torch_repeats repeats)" >&2
"$python" "$here/torch_forward.py" --threads "$threads" --repeats "$torch_repeats" > "$tmp/torch.jsonl"

"$python" - "$tmp/ntk.json" "$tmp/torch.jsonl" "$threads" "${core:-unknown}" <<'EOF'
import json, re, sys

ntk_file, torch_file, threads, core = sys.argv[1:5]
to_ms = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
ntk = {}
for b in json.load(open(ntk_file))["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    m = re.match(r"BM_Forward/(\w+)/W(\d+)/N(\d+)/(float\d+)", b["run_name"])
    ntk[(m[1], int(m[2]), int(m[3]), m[4])] = (b["real_time"] * to_ms[b["time_unit"]], b["GFLOP/s"])
torch = {}
for line in open(torch_file):
    r = json.loads(line)
    torch[(r["arch"], r["width"], r["N"], r["dtype"])] = r["seconds"] * 1e3
    peer = r["peer"]

ctx = json.load(open(ntk_file))["context"]
print(f"forward pass, {threads} threads, {ctx.get('num_cpus')} CPUs, OpenBLAS core {core}; "
      f"ntkit = Network::apply, {peer} = nn.Sequential under inference_mode")
header = ("config", "ntkit median ms", "torch median ms", "torch/ntkit", "ntkit GFLOP/s")
rows = []
for key in sorted(ntk, key=lambda k: (k[0] != "mlp", k[3], k[1], k[2])):
    arch, width, n, dtype = key
    ms, gflops = ntk[key]
    t = torch.get(key)
    rows.append((f"{arch} W={width} N={n} {dtype}", f"{ms:.2f}", "-" if t is None else f"{t:.2f}",
                 "-" if t is None else f"{t / ms:.2f}", f"{gflops:.1f}"))
widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print("| " + " | ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]) + " |")
EOF
