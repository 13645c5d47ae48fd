"""Times JAX neural-tangents' exact CNTK-GAP (3 x [Conv 3x3 SAME, Relu], GlobalAvgPool, Dense) on
N Fashion-MNIST images on this machine, for bench/compare_cntk.sh: the same network and inputs as
the ntkit run. Runs under the venv of scripts/install-nt.sh (build-nt/venv/bin/python).

  nt_cntk.py --x IMAGES.npy --n 16 --dtype float32 --out K.npy
Prints: images, pairs, seconds (best of 2 after a compile run), pixel-pair-layer updates per second.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import nt_kernel  # noqa: E402  (the import shim for neural_tangents.stax)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--x", required=True)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--out")
    a = ap.parse_args()
    nt_kernel._import_nt()  # turns float64 on
    import jax
    jax.config.update("jax_enable_x64", a.dtype == "float64")
    stax, jnp = nt_kernel.stax, nt_kernel.jnp
    layers = []
    for _ in range(3):
        layers += [stax.Conv(1, (3, 3), padding="SAME", W_std=2 ** 0.5, b_std=None), stax.Relu()]
    _, _, kernel_fn = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1, W_std=1.0, b_std=None))
    x = jnp.asarray(np.load(a.x)[: a.n], dtype=a.dtype)
    fn = jax.jit(kernel_fn, static_argnames="get")
    fn(x, None, get="ntk").block_until_ready()  # compile
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        k = fn(x, None, get="ntk").block_until_ready()
        best = min(best, time.perf_counter() - t)
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    pairs = n * n  # neural-tangents computes the full N x N block
    updates = pairs * (h * w) ** 2 * 3
    print(f"neural-tangents: {n} images, {pairs} pairs, {best:.2f} s, {updates / best / 1e6:.1f} M pixel-pair-layer updates/s")
    if a.out:
        np.save(a.out, np.asarray(k, dtype=np.float64))


if __name__ == "__main__":
    main()
