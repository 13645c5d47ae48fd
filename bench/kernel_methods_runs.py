"""Issue 11's kernel-method benchmarks, each run several times, printed as medians.

    /usr/bin/python3 bench/kernel_methods_runs.py [--build build] [--repeat 3] [--threads 2]
                                                  [--only ridge,fcn60k,pntk60k]

ridge:   bench/compare_ridge.sh at N = 20,000 (ntkit's exact kernel ridge, NumPy and
         neural-tangents on the same float64 kernel; the DGEMM peak measured in the same run).
fcn60k:  `ntk regress` on all of Fashion-MNIST, infinite-width NTK of the README's FCN, Nystrom
         M = 10,000 under --max-memory 8G.
pntk60k: the same with the pNTK of the README's CNN (seed 0, standard parameterization).

Wall time and peak RSS come from /usr/bin/time; accuracy and CG iterations from `--json`. Runs
are sequential: one program owns the cores at a time.
"""
import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/datasets/fashion-mnist")
FCN = ", ".join(["Dense(512, W_std=1.4142135623730951, b_std=0.05), Relu"] * 3 + ["Dense(1)"])
CNN = ("Conv(64, 3, padding=SAME, b_std=0), Relu, Conv(64, 3, padding=SAME, b_std=0), Relu, "
       "GlobalAvgPool, Dense(10, b_std=0)")


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (stdout, wall s, peak RSS GiB)."""
    r = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M"] + cmd, capture_output=True, text=True,
                       env=env)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:2])} failed ({r.returncode}): {r.stderr[-2000:]}")
    wall, rss_kb = re.findall(r"TIME ([\d.]+) (\d+)", r.stderr)[-1]
    return r.stdout, float(wall), int(rss_kb) / 2**20


def flat_images(name, out):
    raw = gzip.open(DATA / name).read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    np.save(out, x)
    return out


def regress(ntk, args, threads, out):
    base = ["--y-train", str(DATA / "train-labels-idx1-ubyte.gz"),
            "--y-test", str(DATA / "t10k-labels-idx1-ubyte.gz"),
            "--centers", "10000", "--max-memory", "8G", "--threads", str(threads), "--json",
            "-o", str(out)]
    stdout, wall, rss = timed([ntk, "regress"] + args + base)
    j = json.loads(stdout)
    return {"wall_s": wall, "rss_gib": rss, "test_accuracy": j["results"][0]["test_accuracy"],
            "iterations": j["iterations"]}


def summary(name, runs, keys):
    print(f"{name}: {len(runs)} runs")
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            print(f"  {k}: median {statistics.median(vals):.4g}  (runs: "
                  + ", ".join(f"{v:.4g}" for v in vals) + ")")
    sys.stdout.flush()


RIDGE_PATTERNS = {
    "dgemm_gflops": r"DGEMM peak .*: ([\d.]+) GFLOP/s",
    "dpotrf_s": r"dpotrf: ([\d.]+) s",
    "dpotrf_gflops": r"dpotrf: [\d.]+ s, ([\d.]+) GFLOP/s",
    "kernel_ridge_s": r"kernel_ridge .*: ([\d.]+) s;",
    "ntkit_rss_gb": r"ntkit peak RSS (\d+) KB",
    "numpy_s": r"numpy: ([\d.]+) s",
    "nt_s": r"nt: ([\d.]+) s",
    "nt_rss_gb": r"neural-tangents peak RSS (\d+) KB",
}


def ridge_run(build, threads):
    env = dict(os.environ, N="20000", THREADS=str(threads))
    here = Path(__file__).resolve().parent
    r = subprocess.run(["bash", str(here / "compare_ridge.sh"), str(build)], capture_output=True,
                       text=True, env=env)
    text = r.stdout + r.stderr
    print(text)
    out = {}
    for k, pat in RIDGE_PATTERNS.items():
        m = re.search(pat, text)
        v = float(m.group(1)) if m else None
        out[k] = v / 1e6 if (v is not None and k.endswith("_gb")) else v
    out["nt_crashed"] = "terminated by signal" in text
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=str(Path(__file__).resolve().parents[1] / "build"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default="ridge,fcn60k,pntk60k")
    a = p.parse_args()
    ntk = str(Path(a.build) / "ntk")
    which = a.only.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "ridge" in which:
            runs = [ridge_run(a.build, a.threads) for _ in range(a.repeat)]
            summary("exact ridge N=20000", runs, list(RIDGE_PATTERNS))
        def nystrom(name, args):
            runs = []
            for _ in range(a.repeat):
                runs.append(regress(ntk, args, a.threads, tmp / "pred.npy"))
                print(runs[-1], flush=True)
            summary(name, runs, ["wall_s", "rss_gib", "test_accuracy", "iterations"])

        if "fcn60k" in which:
            xtr = flat_images("train-images-idx3-ubyte.gz", tmp / "fm_train.npy")
            xte = flat_images("t10k-images-idx3-ubyte.gz", tmp / "fm_test.npy")
            nystrom("FCN NTK 60k/10k Nystrom M=10000",
                    ["--net", FCN, "--x-train", str(xtr), "--x-test", str(xte), "--ridge", "1e-3"])
        if "pntk60k" in which:
            nystrom("CNN pNTK 60k/10k Nystrom M=10000",
                    ["--net", CNN, "--parameterization", "standard", "--mode", "pntk", "--seed", "0",
                     "--x-train", str(DATA / "train-images-idx3-ubyte.gz"),
                     "--x-test", str(DATA / "t10k-images-idx3-ubyte.gz"), "--ridge", "1e-4"])

if __name__ == "__main__":
    main()
