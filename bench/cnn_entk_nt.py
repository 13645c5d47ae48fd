#!/usr/bin/env python3
"""The README's CNN (Conv(W, 3, SAME), Relu, Conv(W, 3, SAME), Relu, GlobalAvgPool, Dense(10); W = 64)
on N = 32 Fashion-MNIST images, full eNTK (O = 10) in float32: ntkit's jc / vp / sd / auto beside
functorch's jc / vp and neural-tangents' three implementations (jitted), each method in its own process
with the same parameters, inputs, threads and OpenBLAS kernels; each kernel checked against ntkit's jc
in float64 (the demo's part 1 at this size, issue 15's benchmark). Needs the package's venv and, for
neural-tangents, scripts/install-nt.sh:

    build-py/venv/bin/python bench/cnn_entk_nt.py [--width 64] [--n 32] [--threads 2] [--repeats 5]
        [--nt-python build-nt/venv/bin/python] [--no-vp]
"""
import argparse
import tempfile
from pathlib import Path

from ntkit.demo import entk_methods
from ntkit.demo.common import SIZES, Progress, load_fashion_mnist, median

here = Path(__file__).resolve().parent
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--width", type=int, default=64)
ap.add_argument("--n", type=int, default=32)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--nt-python", default=str(here.parent / "build-nt/venv/bin/python"))
ap.add_argument("--no-vp", action="store_true",
                help="skip the NTK-vector-product methods (each tool's slowest here by 20x or more: minutes)")
a = ap.parse_args()
if a.no_vp:
    entk_methods.NTKIT_METHODS = [m for m in entk_methods.NTKIT_METHODS if m != "vp"]
    entk_methods.FUNCTORCH_METHODS = [m for m in entk_methods.FUNCTORCH_METHODS if m != "vp"]
    entk_methods.NT_IMPLEMENTATIONS = {i: m for i, m in entk_methods.NT_IMPLEMENTATIONS.items() if m != "vp"}
nt_python = a.nt_python if Path(a.nt_python).exists() else None
if nt_python:
    entk_methods.nt_versions(nt_python)
sizes = SIZES["default"]
sizes.entk_repeats = a.repeats
with tempfile.TemporaryDirectory() as work:
    peak = entk_methods.sgemm_peak(a.threads, Path(work))
    r = entk_methods.one_arch("cnn", a.width, a.n, load_fashion_mnist(), sizes, a.threads, Path(work), nt_python,
                              Progress())
print(f"CNN W={a.width} N={a.n} full eNTK float32, {a.threads} threads, median of {a.repeats} (first call apart); "
      f"SGEMM peak {peak['gflops']:.0f} GFLOP/s")
print("| method | median s | first call s | peak RSS MiB | GFLOP/s | rel. diff. vs jc float64 |")
print("|---|---|---|---|---|---|")
for run in r["runs"]:
    print(f"| {run['label']} | {run['median_seconds']:.4f} | {run['first_call_seconds']:.3f} | "
          f"{run['peak_rss_bytes'] / 2**20:.0f} | {run.get('gflops', float('nan')):.0f} | {run['relative_difference']:.1e} |")
best = {tool: min(x["median_seconds"] for x in r["runs"] if x["tool"] == tool) for tool in {x["tool"] for x in r["runs"]}}
ours = best.pop("ntkit")
print("ntkit's best " + f"{ours:.4f} s; " + "; ".join(f"{t}'s best {s:.4f} s = {s / ours:.1f}x ntkit" for t, s in sorted(best.items())))
