"""CNTKSketch end to end on Fashion-MNIST: kernel ridge on CNTKSketch features against kernel ridge on
the exact CNTK-GAP it approximates (depth 3, 3 x 3 SAME, `ntk kernel` of the spec below), by `ntk
regress --ridge auto` for both: the ridge chosen among 0 and 1e-8..10 in half decades (relative to the
mean diagonal), by the MSE on the last 10% of the training examples, then refit on all.

    /usr/bin/python3 bench/cntk_end_to_end.py --work DIR [--ntk build/ntk] [--threads 2]
        [--n-train 1000] [--n-test 1000] [--dims 4096] [--seeds 0,1] [--full F70K.npy]

1k part: the exact kernels (train x train, test x train) are computed in row blocks of 100 into
DIR and kept, so a killed run resumes where it stopped (about 3 minutes per block of 100 x 1000
on 2 quiet cores: 20 blocks for 1000 + 1000 images); then features and ridge for every m and seed.
The exact kernel's rate (pairs per second, from the blocks' wall times) is printed for the
extrapolation below.

--full F70K.npy: CNTKSketch features (70000, m) of all Fashion-MNIST images in the order train then
test (`ntk features --sketch cntk --depth 3 --dim 4096 -x IMAGES70K.npy -o F70K.npy`, what
bench/sketch_speed.py times): ridge on all 60,000 training images, the test accuracy, and the
exact CNTK's time for the same problem extrapolated from its measured pairs per second
(60000² + 10000·60000 pairs: ntk kernel computes a symmetric kernel's upper triangle only once
`--x2` is omitted, so 60000·60001/2 of those).
"""
import argparse
import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/datasets/fashion-mnist")
CONV = "Conv(8, 3, padding=SAME, W_std=1.4142135623730951, b_std=none), Relu"
SPEC = ", ".join([CONV] * 3 + ["GlobalAvgPool, Dense(1, W_std=1, b_std=none)"])
BLOCK = 100


def images(name):
    raw = gzip.open(DATA / name).read()
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28, 1).astype(np.float32) / 255


def labels(name):
    return np.frombuffer(gzip.open(DATA / name).read(), dtype=np.uint8, offset=8).astype(np.int64)


def run(cmd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:2])} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout, time.perf_counter() - t0


def regress(ntk, threads, train, test, y_train, y_test, features):
    """Test accuracy, the chosen ridge and the wall time of `ntk regress --ridge auto` (kernel or features)."""
    flag = ("--f-train", "--f-test") if features else ("--k-train", "--k-test")
    out, wall = run([ntk, "regress", flag[0], str(train), flag[1], str(test), "--y-train", str(y_train), "--y-test",
                     str(y_test), "--ridge", "auto", "--classes", "10", "--threads", str(threads), "--json"])
    j = json.loads(out)
    return j["results"][0]["test_accuracy"], f"{j['ridge']:.3g}", wall


def exact_blocks(a, work, x_train, x_test):
    """Train x train and test x train exact kernels, block by block (resumable); their pairs/s."""
    rates = []
    for kind, x in [("train", x_train), ("test", x_test)]:
        for b in range(0, len(x), BLOCK):
            out = work / f"k_{kind}_b{b // BLOCK}.npy"
            if out.exists():
                continue
            np.save(work / "rows.npy", x[b:b + BLOCK])
            _, wall = run([a.ntk, "kernel", "--net", SPEC, "--x1", str(work / "rows.npy"), "--x2",
                           str(work / "train.npy"), "--dtype", "float32", "--threads", str(a.threads), "-q",
                           "-o", str(out)])
            rates.append(len(x[b:b + BLOCK]) * len(x_train) / wall)
            print(f"  exact block {out.name}: {wall:.0f} s, {rates[-1]:.0f} pairs/s", flush=True)
    k = lambda kind, n: np.concatenate([np.load(work / f"k_{kind}_b{b}.npy") for b in range((n + BLOCK - 1) // BLOCK)])
    np.save(work / "k_train.npy", k("train", len(x_train)))
    np.save(work / "k_test.npy", k("test", len(x_test)))
    return rates


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ntk", default=str(Path(__file__).resolve().parents[1] / "build" / "ntk"))
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    # m > n-train makes ridge on features solve an m x m system (FᵀF), slower than the kernel's n x n.
    p.add_argument("--dims", default="4096")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--pairs-per-s", type=float, help="the exact kernel's rate, if no block was computed in this run")
    p.add_argument("--full", type=Path, help="CNTKSketch features (70000, m) of all images, train then test")
    a = p.parse_args()
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    x_train = images("train-images-idx3-ubyte.gz")[: a.n_train]
    x_test = images("t10k-images-idx3-ubyte.gz")[: a.n_test]
    y_train, y_test = labels("train-labels-idx1-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")
    np.save(work / "train.npy", x_train)
    np.save(work / "test.npy", x_test)
    np.save(work / "y_train.npy", y_train[: a.n_train])
    np.save(work / "y_test.npy", y_test[: a.n_test])

    print(f"exact CNTK-GAP, {a.n_train} train x {a.n_train} and {a.n_test} test x {a.n_train}: ntk kernel --net '{SPEC}' "
          f"--dtype float32, {a.threads} threads", flush=True)
    rates = exact_blocks(a, work, x_train, x_test)
    rate = float(np.median(rates)) if rates else a.pairs_per_s
    acc, ridge, wall = regress(a.ntk, a.threads, work / "k_train.npy", work / "k_test.npy", work / "y_train.npy",
                               work / "y_test.npy", False)
    print(f"\n| kernel | m | seed | test accuracy | ridge (auto) | features s | regress s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| exact CNTK-GAP | - | - | {acc:.3f} | {ridge} | - | {wall:.1f} |", flush=True)
    for m in [int(v) for v in a.dims.split(",")]:
        for seed in [int(v) for v in a.seeds.split(",")]:
            walls = 0.0
            for part in ["train", "test"]:
                _, w = run([a.ntk, "features", "--sketch", "cntk", "--depth", "3", "--dim", str(m), "--seed", str(seed),
                            "--threads", str(a.threads), "-q", "-x", str(work / f"{part}.npy"), "-o",
                            str(work / f"f_{part}.npy")])
                walls += w
            acc, ridge, wall = regress(a.ntk, a.threads, work / "f_train.npy", work / "f_test.npy", work / "y_train.npy",
                                       work / "y_test.npy", True)
            print(f"| CNTKSketch | {m} | {seed} | {acc:.3f} | {ridge} | {walls:.1f} | {wall:.1f} |", flush=True)
    if rate:
        print(f"\nexact CNTK-GAP rate: {rate:.0f} pairs/s on {a.threads} threads (median of this run's blocks)")

    if a.full is None:
        return
    f = np.load(a.full, mmap_mode="r")
    if f.shape[0] != 70000:
        sys.exit(f"error: --full has {f.shape[0]} rows; expected 70000 (60000 train then 10000 test)")
    np.save(work / "f60k_train.npy", f[:60000])
    np.save(work / "f60k_test.npy", f[60000:])
    np.save(work / "y60k_train.npy", y_train)
    np.save(work / "y60k_test.npy", y_test)
    acc, ridge, wall = regress(a.ntk, a.threads, work / "f60k_train.npy", work / "f60k_test.npy", work / "y60k_train.npy",
                               work / "y60k_test.npy", True)
    print(f"\nall 60,000 training images, CNTKSketch m = {f.shape[1]}: test accuracy {acc:.4f} (ridge {ridge}), "
          f"ridge on features {wall:.1f} s")
    if rate:
        pairs = 60000 * 60001 / 2 + 10000 * 60000
        print(f"exact CNTK-GAP for the same problem: {pairs:.3g} pairs at {rate:.0f} pairs/s = {pairs / rate / 86400:.1f} "
              f"days on {a.threads} threads (extrapolated; its solve not counted)")


if __name__ == "__main__":
    main()
