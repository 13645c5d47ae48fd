"""Relative Frobenius error of NTKSketch and NTKRF features against the exact infinite-width NTK that
`ntk kernel` computes for the documented spec, on the first N Fashion-MNIST training images
(flattened, [0, 1]), for several feature dimensions; with the time of each `ntk features` command.

    /usr/bin/python3 bench/sketch_error.py [--ntk build/ntk] [--n 1000] [--depth 2]
                                           [--dims 1024,4096,16384] [--seeds 0] [--threads 2]
"""
import argparse
import gzip
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ntk", default=str(Path(__file__).resolve().parents[1] / "build" / "ntk"))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--dims", default="1024,4096,16384")
    p.add_argument("--seeds", default="0")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    raw = gzip.open(DATA).read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)[: a.n].astype(np.float32) / 255
    spec = ", ".join(["Dense(512, W_std=1.4142135623730951, b_std=none), Relu"] * a.depth
                     + ["Dense(1, W_std=1, b_std=none)"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "x.npy", x)
        subprocess.run([a.ntk, "kernel", "--net", spec, "--x1", str(tmp / "x.npy"), "-o", str(tmp / "k.npy"),
                        "-q", "--threads", str(a.threads)], check=True)
        k = np.load(tmp / "k.npy")
        print(f"{a.n} Fashion-MNIST images, depth {a.depth}, exact kernel: ntk kernel --net '{spec}'")
        print("| sketch | m | seed | relative Frobenius error | features s | images/s |")
        print("|---|---|---|---|---|---|")
        for sketch in ["ntk", "ntkrf"]:
            for m in [int(v) for v in a.dims.split(",")]:
                for seed in [int(v) for v in a.seeds.split(",")]:
                    t0 = time.perf_counter()
                    subprocess.run([a.ntk, "features", "--sketch", sketch, "--depth", str(a.depth), "--dim", str(m),
                                    "--seed", str(seed), "--dtype", "float64", "--threads", str(a.threads), "-q",
                                    "-x", str(tmp / "x.npy"), "-o", str(tmp / "f.npy")], check=True)
                    dt = time.perf_counter() - t0
                    f = np.load(tmp / "f.npy")
                    err = np.linalg.norm(f @ f.T - k) / np.linalg.norm(k)
                    print(f"| {sketch} | {m} | {seed} | {err:.4f} | {dt:.2f} | {a.n / dt:.0f} |", flush=True)


if __name__ == "__main__":
    main()
