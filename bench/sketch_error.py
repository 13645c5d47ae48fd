"""Relative Frobenius error of NTKSketch and NTKRF features against the exact infinite-width NTK that
`ntk kernel` computes for the documented spec, on the first N Fashion-MNIST training images
(flattened, [0, 1]), for several feature dimensions; with the time of each `ntk features` command.
Then CNTKSketch (depth 3, 3x3 SAME, defaults) against the exact CNTK-GAP of its spec from `ntk kernel`
on the first --cntk-n images as 28 x 28 x 1 (the exact kernel costs D² per pair: 1000 images take
hours on 2 cores). Then gradient sketches of the README's CNN (seed 0, standard parameterization)
against its exact pNTK from `ntk entk --mode pntk`, on the same images as 28 x 28 x 1.

    /usr/bin/python3 bench/sketch_error.py [--ntk build/ntk] [--n 1000] [--depth 2]
                                           [--dims 1024,4096,16384] [--seeds 0] [--threads 2]
                                           [--skip-dense] [--skip-gradient] [--cntk-n 100] [--cntk-exact K.npy]
"""
import argparse
import gzip
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def error_rows(label, cmd_for, k, out, n, dims, seeds):
    """Runs `ntk features` (cmd_for(m, seed)) for every m and seed and prints a table row each."""
    print("| sketch | m | seed | relative Frobenius error | features s | images/s |")
    print("|---|---|---|---|---|---|")
    for m in dims:
        for seed in seeds:
            t0 = time.perf_counter()
            subprocess.run(cmd_for(m, seed), check=True)
            dt = time.perf_counter() - t0
            f = np.load(out)
            err = np.linalg.norm(f @ f.T - k) / np.linalg.norm(k)
            print(f"| {label} | {m} | {seed} | {err:.4f} | {dt:.2f} | {n / dt:.0f} |", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ntk", default=str(Path(__file__).resolve().parents[1] / "build" / "ntk"))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--dims", default="1024,4096,16384")
    p.add_argument("--seeds", default="0")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-dense", action="store_true")
    p.add_argument("--skip-gradient", action="store_true")
    p.add_argument("--cntk-n", type=int, default=100, help="images for the CNTKSketch table (0: skip)")
    p.add_argument("--cntk-exact", type=Path,
                   help="the exact CNTK-GAP of the first --cntk-n images (.npy), e.g. k_train.npy of "
                        "bench/cntk_end_to_end.py (1000 images take about an hour on 2 cores), instead of computing it")
    a = p.parse_args()
    dims = [int(v) for v in a.dims.split(",")]
    seeds = [int(v) for v in a.seeds.split(",")]
    raw = gzip.open(DATA).read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)[: a.n].astype(np.float32) / 255
    threads = ["--threads", str(a.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def features(inp, out, *args):  # the `ntk features` command for one table
            return lambda m, seed: [a.ntk, "features", *args, "--dim", str(m), "--seed", str(seed), "--dtype",
                                    "float64", *threads, "-q", "-x", str(tmp / inp), "-o", str(tmp / out)]

        if not a.skip_dense:
            spec = ", ".join(["Dense(512, W_std=1.4142135623730951, b_std=none), Relu"] * a.depth
                             + ["Dense(1, W_std=1, b_std=none)"])
            np.save(tmp / "x.npy", x)
            subprocess.run([a.ntk, "kernel", "--net", spec, "--x1", str(tmp / "x.npy"), "-o", str(tmp / "k.npy"),
                            "-q", *threads], check=True)
            k = np.load(tmp / "k.npy")
            print(f"{a.n} Fashion-MNIST images, depth {a.depth}, exact kernel: ntk kernel --net '{spec}'")
            for sketch in ["ntk", "ntkrf"]:
                error_rows(sketch, features("x.npy", "f.npy", "--sketch", sketch, "--depth", str(a.depth)), k,
                           tmp / "f.npy", a.n, dims, seeds)
        if a.cntk_n > 0:
            conv = "Conv(8, 3, padding=SAME, W_std=1.4142135623730951, b_std=none), Relu"
            cspec = ", ".join([conv] * 3 + ["GlobalAvgPool, Dense(1, W_std=1, b_std=none)"])
            np.save(tmp / "cimg.npy", x[: a.cntk_n].reshape(-1, 28, 28, 1))
            if a.cntk_exact:
                ck = np.load(a.cntk_exact).astype(np.float64)
                if ck.shape != (a.cntk_n, a.cntk_n):
                    raise SystemExit(f"error: --cntk-exact is {ck.shape}, not ({a.cntk_n}, {a.cntk_n})")
                print(f"\nexact CNTK-GAP of {a.cntk_n} images from {a.cntk_exact} (ntk kernel --net '{cspec}')")
            else:
                t0 = time.perf_counter()
                subprocess.run([a.ntk, "kernel", "--net", cspec, "--x1", str(tmp / "cimg.npy"), "-o", str(tmp / "ck.npy"),
                                "-q", *threads], check=True)
                print(f"\nexact CNTK-GAP of {a.cntk_n} images: ntk kernel --net '{cspec}' ({time.perf_counter() - t0:.1f} s)")
                ck = np.load(tmp / "ck.npy")
            error_rows("cntk", features("cimg.npy", "cf.npy", "--sketch", "cntk", "--depth", "3"),
                       ck, tmp / "cf.npy", a.cntk_n, dims, seeds)
        if a.skip_gradient:
            return
        cnn = ("Conv(64, 3, padding=SAME, b_std=0), Relu, Conv(64, 3, padding=SAME, b_std=0), Relu, "
               "GlobalAvgPool, Dense(10, b_std=0)")
        net = ["--net", cnn, "--parameterization", "standard"]
        np.save(tmp / "img.npy", x.reshape(-1, 28, 28, 1))
        t0 = time.perf_counter()
        subprocess.run([a.ntk, "entk", *net, "--seed", "0", "--mode", "pntk", "--x1", str(tmp / "img.npy"),
                        "-o", str(tmp / "p.npy"), "-q", *threads], check=True)
        print(f"\nexact pNTK: ntk entk --net '{cnn}' --parameterization standard --seed 0 --mode pntk "
              f"({time.perf_counter() - t0:.1f} s)")
        k = np.load(tmp / "p.npy").astype(np.float64)
        for proj in ["srht", "hadamard", "countsketch"]:
            error_rows(f"gradient {proj}", features("img.npy", "g.npy", "--sketch", "gradient", *net, "--init-seed",
                                                    "0", "--projection", proj), k, tmp / "g.npy", a.n, dims, seeds)


if __name__ == "__main__":
    main()
