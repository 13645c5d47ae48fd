#!/usr/bin/python3
"""Width sweep of the pNTK approximation (Mohamadi et al. 2023) at initialization.

For the README's MLP and CNN, runs `ntk pntk-report` at every width on a Fashion-MNIST subset and
prints, per width, the relative Frobenius distance ‖pNTK ⊗ I − eNTK‖_F / ‖eNTK‖_F on the train
kernel, the λmax and condition ratios (pNTK ⊗ I over eNTK), the kernel-regression test accuracy
with each kernel and the kernel times; then the least-squares slope of log(error) against
log(width) (the paper proves error = O(width^-1/2) for a wide readout layer).

The subsets are written as .npy by this script (first N training / test images, scaled to [0, 1];
CNN images average-pooled by --cnn-pool to keep the full CNN eNTK, whose cost grows like W², within
minutes) and every eNTK computation is bounded by --max-memory. Example:

    /usr/bin/python3 bench/pntk_widths.py --ntk build-h/ntk
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist/"
MLP = "Dense({w}), Relu, Dense({w}), Relu, Dense(10)"
CNN = ("Conv({w}, 3, padding=SAME, b_std=0), Relu, Conv({w}, 3, padding=SAME, b_std=0), Relu, "
       "GlobalAvgPool, Dense(10, b_std=0)")


def idx_images(name):
    raw = gzip.open(os.path.join(DATA, name)).read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


def idx_labels(name):
    raw = gzip.open(os.path.join(DATA, name)).read()
    return np.frombuffer(raw, np.uint8, offset=8).astype(np.int64)


def subset(n_train, n_test, pool, flat, out, tag):
    xtr = idx_images("train-images-idx3-ubyte.gz")[:n_train].astype(np.float32) / 255
    xte = idx_images("t10k-images-idx3-ubyte.gz")[:n_test].astype(np.float32) / 255
    ytr = idx_labels("train-labels-idx1-ubyte.gz")[:n_train]
    yte = idx_labels("t10k-labels-idx1-ubyte.gz")[:n_test]

    def prep(x):
        if pool > 1:
            h = 28 // pool
            x = x[:, :h * pool, :h * pool].reshape(len(x), h, pool, h, pool).mean(axis=(2, 4))
        return x.reshape(len(x), -1) if flat else x[..., None]

    paths = {}
    for key, arr in (("x_train", prep(xtr)), ("x_test", prep(xte)), ("y_train", ytr), ("y_test", yte)):
        paths[key] = os.path.join(out, f"{tag}_{key}.npy")
        np.save(paths[key], np.ascontiguousarray(arr))
    return paths


def report(ntk, spec, paths, extra, threads):
    cmd = [ntk, "pntk-report", "--net", spec, "--seed", "0", "--x-train", paths["x_train"], "--y-train",
           paths["y_train"], "--x-test", paths["x_test"], "--y-test", paths["y_test"], "--threads", str(threads),
           "--json"] + extra
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    j = json.loads(r.stdout)
    j["wall"] = time.time() - t0
    return j


def fmt(v, spec=".4g"):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ntk", default="build-h/ntk")
    ap.add_argument("--widths", default="64,128,256,512,1024,2048")
    ap.add_argument("--nets", default="mlp,cnn")
    ap.add_argument("--mlp-n", type=int, default=256, help="train and test examples for the MLP")
    ap.add_argument("--cnn-n", type=int, default=32, help="train and test examples for the CNN")
    ap.add_argument("--cnn-pool", type=int, default=4, help="average-pool factor of the CNN's images (4: 7x7)")
    ap.add_argument("--ridge", default="1e-4")
    ap.add_argument("--threads", type=int, default=2)
    # Unbounded, the CNN at W = 2048 takes tiles of 14-21 GB (measured); 4G keeps a shared
    # machine usable at a modest cost in FLOPs (the planner's smaller tiles).
    ap.add_argument("--max-memory", default="4G", help="budget of each eNTK computation")
    ap.add_argument("--json-out", help="also write every report as one JSON list here")
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    everything = []
    with tempfile.TemporaryDirectory(prefix="pntk_widths_") as tmp:
        for net in args.nets.split(","):
            if net == "mlp":
                paths = subset(args.mlp_n, args.mlp_n, 1, True, tmp, "mlp")
                spec, extra = MLP, []
                what = f"MLP {MLP.format(w='W')}, NTK parameterization, N = {args.mlp_n} train / {args.mlp_n} test"
            else:
                paths = subset(args.cnn_n, args.cnn_n, args.cnn_pool, False, tmp, "cnn")
                spec, extra = CNN, ["--parameterization", "standard"]
                h = 28 // args.cnn_pool
                what = (f"CNN {CNN.format(w='W')}, standard parameterization, {h}x{h} images "
                        f"(average-pooled by {args.cnn_pool}), N = {args.cnn_n} train / {args.cnn_n} test")
            print(f"\n{what}, seed 0, ridge {args.ridge} (relative), {args.threads} threads, --max-memory {args.max_memory}")
            print(f"{'W':>5} {'rel.err':>8} {'test err':>8} {'λmax ratio':>10} {'cond ratio':>10} {'acc full':>8} "
                  f"{'acc pNTK':>8} {'full s':>7} {'pNTK s':>7} {'solve f':>7} {'solve p':>7} {'wall s':>7}")
            errs = []
            for w in widths:
                j = report(args.ntk, spec.format(w=w), paths, extra + ["--ridge", args.ridge, "--max-memory", args.max_memory],
                           args.threads)
                j["net"], j["width"] = net, w
                everything.append(j)
                t = j["train"]
                full_s = j["full_train"]["seconds"] + j["full_test"]["seconds"]
                pntk_s = j["pntk_train"]["seconds"] + j["pntk_test"]["seconds"]
                errs.append(t["relative_frobenius"])
                print(f"{w:>5} {t['relative_frobenius']:>8.4f} {j['test']['relative_frobenius']:>8.4f} "
                      f"{fmt(t.get('lambda_max_ratio')):>10} {fmt(t.get('condition_ratio')):>10} "
                      f"{j['accuracy_full']:>8.3f} {j['accuracy_pntk']:>8.3f} {full_s:>7.2f} {pntk_s:>7.2f} "
                      f"{j['solve_seconds_full']:>7.2f} {j['solve_seconds_pntk']:>7.2f} {j['wall']:>7.1f}",
                      flush=True)
            if len(widths) > 1:
                slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
                print(f"log-log slope of the train relative error against width: {slope:.3f} (theory: -0.5)")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
