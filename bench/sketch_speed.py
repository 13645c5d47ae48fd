"""Feature maps on all 70,000 Fashion-MNIST images (60,000 train + 10,000 test): the whole
`ntk features` command under /usr/bin/time (wall, peak RSS), images per second.

    /usr/bin/python3 bench/sketch_speed.py [--ntk build/ntk] [--threads 2] [--repeat 3]
        [--runs "ntk:8192:fourier,ntk:8192:hadamard,ntkrf:8192:fourier,cntk:4096:hadamard"] [--n 70000]

Dense sketches (ntk, ntkrf) get the images flattened to 784-vectors (depth 2); CNTKSketch gets them as
28 x 28 x 1 (depth 3, 3x3 SAME). Pixels / 255 in float32, as torchvision; features written as float32.
"""
import argparse
import gzip
import re
import statistics
import subprocess
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
        print(f"{len(x)} Fashion-MNIST images, {a.threads} threads, {a.repeat} runs each")
        print("| sketch | m | transform | median wall s | images/s | peak RSS MiB | runs s |")
        print("|---|---|---|---|---|---|---|")
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
            print(f"| {sketch} | {m} | {transform} | {med:.1f} | {len(x) / med:.0f} | {max(rss):.0f} | "
                  + ", ".join(f"{w:.1f}" for w in walls) + " |", flush=True)


if __name__ == "__main__":
    main()
