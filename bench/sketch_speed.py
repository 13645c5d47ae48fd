"""Feature maps on all 70,000 Fashion-MNIST images (60,000 train + 10,000 test): the whole
`ntk features` command under /usr/bin/time (wall, peak RSS), images per second.

    /usr/bin/python3 bench/sketch_speed.py [--ntk build/ntk] [--threads 2] [--repeat 3]
        [--runs "ntk:8192:fourier,ntk:8192:hadamard,ntkrf:8192:fourier,cntk:4096:hadamard"] [--n 70000]

Dense sketches (ntk, ntkrf) get the images flattened to 784-vectors (depth 2); CNTKSketch gets them as
28 x 28 x 1 (depth 3, 3x3 SAME). Pixels / 255 in float32, as torchvision; features written as float32.

Achieved GFLOP/s of the dense maps' transforms: a nominal count per image from the maps' structure (the
transforms and products src/features.cpp and src/sketch.cpp run) over the whole command's wall time
(reading and writing included, so a lower bound). Counted as: a real FFT of even length L (kissfft's
half-length complex transform) 2.5·L·log2 L, a Walsh-Hadamard transform L·log2 L, a product of an
(n, k) by a (k, m) matrix 2·n·k·m. Beside it, the SGEMM rate NumPy's OpenBLAS reaches on this machine
with the same threads (the ceiling for NTKRF, whose products are SGEMMs).
"""
import argparse
import gzip
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/datasets/fashion-mnist")


def images():
    parts = []
    for name in ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]:
        raw = gzip.open(DATA / name).read()
        parts.append(np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28, 1))
    return (np.concatenate(parts).astype(np.float32) / 255)


def fft_length(n):
    """The smallest even 2^a 3^b 5^c >= n, as src/sketch.cpp pads (1 for n = 1)."""
    if n <= 1:
        return 1
    best = 2
    while best < n:
        best *= 2
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            v = 2 * p35
            while v < n:
                v *= 2
            best = min(best, v)
            p35 *= 3
        p5 *= 5
    return best


def pow2(n):
    return 1 << max(0, (n - 1).bit_length())


def transform_flops(sketch, m, transform, d=784, depth=2):
    """Nominal FLOPs per image of NTKSketch (degree 8, PolySketch width m/4) or NTKRF (m1 = m0 = m/2, the step
    features from the ReLU features' projections: one product per layer)."""
    fourier = transform == "fourier"
    tr = (lambda n: 2.5 * fft_length(n) * math.log2(fft_length(n))) if fourier else \
         (lambda n: pow2(n) * math.log2(pow2(n)))
    if sketch == "ntk":
        q, mp = 8, (m // 4 + 1) // 2 * 2
        levels = int(math.log2(q))
        nodes = [(q >> l, d if l == 1 else mp) for l in range(1, levels + 1)]
        flops = sum(k * 2 * tr(n) for k, n in nodes)  # the all-x tree: two transforms per TensorSRHT
        # A mixed node of degree j at level l >= 2 transforms only its mixed child (the level below is
        # mixed when j mod 2^(l-1) != 0); its all-x and all-e1 inputs' samples are shared or constant.
        flops += sum(tr(mp) for j in range(1, q) for l in range(2, levels + 1) if j % (1 << (l - 1)))
        return flops + tr((1 if fourier else 0) + q * mp)  # the combining SRHT
    if sketch == "ntkrf":
        m1 = m0 = m // 2
        flops, z_dim, psi_dim = 0.0, d, d
        for _ in range(depth):
            flops += 2 * z_dim * m1 + tr(psi_dim) + tr(m0)
            z_dim, psi_dim = m1, m
        return flops
    return None


SGEMM = """
import time, numpy as np
a = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
a @ a
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter(); a @ a; best = min(best, time.perf_counter() - t0)
print(2 * 4096 ** 3 / best / 1e9)
"""


def sgemm_rate(threads):
    """NumPy's float32 4096^3 product on `threads` OpenBLAS threads, GFLOP/s (best of 3)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    r = subprocess.run([sys.executable, "-c", SGEMM], env=env, capture_output=True, text=True, check=True)
    return float(r.stdout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ntk", default=str(Path(__file__).resolve().parents[1] / "build" / "ntk"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--n", type=int, default=70000)
    p.add_argument("--runs", default="ntk:8192:fourier,ntk:8192:hadamard,ntkrf:8192:fourier,cntk:4096:hadamard")
    a = p.parse_args()
    x = images()[: a.n]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "flat.npy", x.reshape(len(x), -1))
        np.save(tmp / "img.npy", x)
        print(f"{len(x)} Fashion-MNIST images, {a.threads} threads, {a.repeat} runs each; "
              f"NumPy SGEMM 4096^3 on {a.threads} threads: {sgemm_rate(a.threads):.0f} GFLOP/s")
        print("| sketch | m | transform | median wall s | images/s | GFLOP/s (nominal) | peak RSS MiB | runs s |")
        print("|---|---|---|---|---|---|---|---|")
        for run in a.runs.split(","):
            sketch, m, transform = run.split(":")
            depth, inp = ("3", "img.npy") if sketch == "cntk" else ("2", "flat.npy")
            cmd = ["/usr/bin/time", "-f", "TIME %e %M", a.ntk, "features", "--sketch", sketch, "--depth", depth,
                   "--dim", m, "--transform", transform, "--threads", str(a.threads), "-q",
                   "-x", str(tmp / inp), "-o", str(tmp / "f.npy")]
            walls, rss = [], []
            for _ in range(a.repeat):
                r = subprocess.run(cmd, capture_output=True, text=True, check=True)
                w, k = re.findall(r"TIME ([\d.]+) (\d+)", r.stderr)[-1]
                walls.append(float(w))
                rss.append(int(k) / 1024)
            med = statistics.median(walls)
            fl = transform_flops(sketch, int(m), transform)
            rate = f"{fl * len(x) / med / 1e9:.1f}" if fl else "-"
            print(f"| {sketch} | {m} | {transform} | {med:.1f} | {len(x) / med:.0f} | {rate} | {max(rss):.0f} | "
                  + ", ".join(f"{w:.1f}" for w in walls) + " |", flush=True)


if __name__ == "__main__":
    main()
