"""Effective dimension d_eff(λ) = Σ σ_i/(σ_i + λ) of the FCN NTK on the first N Fashion-MNIST
training images, λ relative to the mean diagonal as ntk regress's --ridge: how many centers a Nyström
solve needs to match the exact one (Rudi et al. 2015: M of order d_eff).

    /usr/bin/python3 bench/effective_dimension.py [--ntk build/ntk] [--n 10000] [--ridges 1e-4,1e-3,1e-2,1e-1]
"""
import argparse
import gzip
import subprocess
import tempfile
from pathlib import Path

import numpy as np

FCN = ", ".join(["Dense(512, W_std=1.4142135623730951, b_std=0.05), Relu"] * 3 + ["Dense(1)"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ntk", default=str(Path(__file__).resolve().parents[1] / "build" / "ntk"))
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--ridges", default="1e-4,1e-3,1e-2,1e-1")
    a = p.parse_args()
    raw = gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)[: a.n].astype(np.float32) / 255
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        subprocess.run([a.ntk, "kernel", "--net", FCN, "--x1", str(Path(tmp) / "x.npy"), "-o",
                        str(Path(tmp) / "k.npy"), "-q"], check=True)
        k = np.load(Path(tmp) / "k.npy")
    s = np.linalg.eigvalsh(k)[::-1]
    md = np.mean(np.diag(k))
    print(f"FCN NTK of {a.n} images: mean diagonal {md:.4g}; sigma_2000 / mean diagonal {s[1999] / md:.3f}, "
          f"sigma_4000 / mean diagonal {s[3999] / md:.3f}; eigenvalues beyond 2000 carry {s[2000:].sum() / s.sum():.1%} of the trace")
    for r in [float(v) for v in a.ridges.split(",")]:
        print(f"ridge {r:g}: d_eff = {np.sum(s / (s + r * md)):.0f}")


if __name__ == "__main__":
    main()
