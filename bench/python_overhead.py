#!/usr/bin/env python3
"""The Python package's calling overhead: ntkit.empirical_ntk and ntkit.kernel from Python against
the library's own Google Benchmark time for the same computation, measured in one run.

Configurations: the README's (bench/bench_entk.cpp: the PyTorch peer's MLP and CNN, standard
parameterization, float32; bench/bench_kernel.cpp: the 3-layer CNTK-GAP and the FCN kernel).
The library figure is the median real time of ntk_bench's repetitions (the C++ call on arrays
already in memory, network built outside the timed loop); the Python figure is the median of as
many calls of the public function, each of which also parses the spec, builds the network, reads
the parameters from a dict of NumPy arrays and returns a NumPy array. Inputs are random normal
(vectors) or uniform [0, 1) images, as in the benchmarks.

    build-py/venv/bin/python bench/python_overhead.py [--bench build/bench/ntk_bench] [--reps 7] [--rounds 3]
        [--threads 2]

Prints one row per configuration: library ms, Python ms, ratio Python / library (goal <= 1.05).
This VM's speed drifts by up to ~7% between runs of the same call (a CNTK-GAP call measured
0.98-1.07 s in the CLI and in Python alike), hence the rounds, each library run next to its
Python run.
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

import ntkit

REPO = Path(__file__).resolve().parents[1]
MLP = "Dense({w}, b_std=0), Relu, Dense({w}, b_std=0), Relu, Dense(10, b_std=0)"
CNN = "Conv({w}, 3, padding=SAME, b_std=0), Relu, Conv({w}, 3, padding=SAME, b_std=0), Relu, GlobalAvgPool, Dense(10, b_std=0)"
R2 = "1.4142135623730951"
CNTK = (f"Conv(1, 3, padding=SAME, W_std={R2}), Relu, Conv(1, 3, padding=SAME, W_std={R2}), Relu, "
        f"Conv(1, 3, padding=SAME, W_std={R2}), Relu, GlobalAvgPool, Dense(1)")
FCN = (f"Dense(1, W_std={R2}, b_std=0.05), Relu, Dense(1, W_std={R2}, b_std=0.05), Relu, "
       f"Dense(1, W_std={R2}, b_std=0.05), Relu, Dense(1)")

# (label, benchmark name, kind, spec, input shape, N, mode, method)
CONFIGS = [
    ("eNTK MLP W=512, N=64, full (sd)", "BM_EntkMlp512Full_sd/64/real_time", "entk", MLP.format(w=512), (784,), 64, "full", "sd"),
    ("eNTK MLP W=512, N=1000, full (sd)", "BM_EntkMlp512Full_sd/1000/real_time", "entk", MLP.format(w=512), (784,), 1000, "full", "sd"),
    ("eNTK MLP W=2048, N=128, pntk (sd)", "BM_EntkMlp2048Pntk_sd/128/real_time", "entk", MLP.format(w=2048), (784,), 128, "pntk", "sd"),
    ("eNTK CNN W=64, N=32, full (sd)", "BM_EntkCnn64Full_sd/32/real_time", "entk", CNN.format(w=64), (28, 28, 1), 32, "full", "sd"),
    ("CNTK-GAP N=32, float32", "BM_Cntk/gap/float32/32/real_time", "kernel", CNTK, (28, 28, 1), 32, None, None),
    ("FCN NTK N=4000, float32", "BM_FcnKernel/float32/4000/real_time", "kernel", FCN, (784,), 4000, None, None),
]


def library_times(bench, names, reps, threads):
    """Median real time (ms) of each benchmark, from one ntk_bench run."""
    pattern = "^(" + "|".join(names) + ")$"
    env = dict(os.environ, NTK_NUM_THREADS=str(threads), OMP_NUM_THREADS="1")
    out = subprocess.run([str(bench), f"--benchmark_filter={pattern}", f"--benchmark_repetitions={reps}",
                          "--benchmark_report_aggregates_only=true", "--benchmark_format=json"],
                         check=True, capture_output=True, text=True, env=env).stdout
    medians = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
            medians[b["run_name"]] = b["real_time"] * scale
    return medians


def python_time(kind, spec, shape, n, mode, method, reps, threads):
    rng = np.random.default_rng(0)
    if kind == "entk":
        x = rng.standard_normal((n,) + shape).astype(np.float32)
        net = ntkit.Network(spec, shape, parameterization="standard")
        params = net.init(seed=0)
        call = lambda: ntkit.empirical_ntk(net, params, x, mode=mode, method=method, threads=threads)  # noqa: E731
    else:
        x = rng.random((n,) + shape).astype(np.float32)
        net = ntkit.Network(spec, shape)
        call = lambda: ntkit.kernel(net, x, dtype="float32", threads=threads)  # noqa: E731
    call()  # warm-up, as Google Benchmark's first iterations
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default=str(REPO / "build" / "bench" / "ntk_bench"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="library-then-Python pairs per configuration")
    a = ap.parse_args()
    ntkit.set_num_threads(a.threads)
    print(f"threads {a.threads}; each figure the median over {a.rounds} rounds of the median of {a.reps} "
          "repetitions; library = ntk_bench (C++), Python = ntkit call")
    print("| configuration | library ms | Python ms | Python / library |\n|---|---|---|---|")
    for label, name, kind, spec, shape, n, mode, method in CONFIGS:
        # One configuration at a time, the library right before Python: the machine's speed drifts
        # by a few percent over minutes, as much as the overhead measured.
        refs, pys = [], []
        for _ in range(a.rounds):
            refs.append(library_times(a.bench, [name], a.reps, a.threads)[name])
            pys.append(python_time(kind, spec, shape, n, mode, method, a.reps, a.threads))
        ref, py = float(np.median(refs)), float(np.median(pys))
        print(f"| {label} | {ref:.2f} | {py:.2f} | {py / ref:.3f} |", flush=True)


if __name__ == "__main__":
    main()
