"""A plan for N = 1,000,000 on a cluster (issue 17): per-tile throughputs measured on this machine
(one off-diagonal tile, one thread, as one ntkit.dask task runs it) for the README's FCN NTK and the
CNN pNTK on Fashion-MNIST images, scaled to the upper tiles of a 10^6 x 10^6 float32 kernel.

    build-py/venv/bin/python bench/dask_plan.py [--n 1000000] [--fcn-tile 4000] [--cnn-tile 2000]

Prints, per kernel: the tile's time (median of 3), pairs per second per core, tiles, bytes of the
store, core-hours, and the cores that finish it within 24 hours (with the measured per-task
overhead added per tile).
"""
import argparse
import gzip
import os
import statistics
import time

import numpy as np

import ntkit

FCN = ", ".join(["Dense(512, W_std=1.4142135623730951, b_std=0.05), Relu"] * 3 + ["Dense(1)"])
CNN = "Conv(64, 3, padding=SAME, b_std=0), Relu, Conv(64, 3, padding=SAME, b_std=0), Relu, GlobalAvgPool, Dense(10, b_std=0)"
FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def images(count):
    if os.path.exists(FMNIST):
        with gzip.open(FMNIST) as f:
            data = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28, 1)
        return (data[:count].astype(np.float32) / 255)
    return np.random.default_rng(0).random((count, 28, 28, 1), dtype=np.float32)


def tile_seconds(fn, rounds=3):
    fn()  # warm-up (allocations, first-touch)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--fcn-tile", type=int, default=4000)
    ap.add_argument("--cnn-tile", type=int, default=2000)
    ap.add_argument("--overhead-ms", type=float, default=0.0, help="per-task overhead (bench/dask_overhead.py)")
    a = ap.parse_args()
    x = images(2 * max(a.fcn_tile, a.cnn_tile))
    fcn = ntkit.Network(FCN, input_shape=(784,))
    cnn = ntkit.Network(CNN, input_shape=(28, 28, 1), parameterization="standard")
    flat = x.reshape(len(x), -1)
    t, c = a.fcn_tile, a.cnn_tile
    cases = [
        ("FCN NTK (infinite width), float32", t,
         lambda: ntkit.kernel(fcn, flat[:t], flat[t:2 * t], dtype="float32", threads=1)),
        ("CNN pNTK (W=64), float32", c,
         lambda: ntkit.empirical_ntk(cnn, 0, x[:c], x[c:2 * c], mode="pntk", dtype="float32", tile=c, threads=1)),
    ]
    n = a.n
    print(f"N = {n:,}: upper tiles of an N x N float32 kernel; one thread per task")
    for name, side, fn in cases:
        s = tile_seconds(fn)
        tiles_per_side = -(-n // side)
        tiles = tiles_per_side * (tiles_per_side + 1) // 2
        core_seconds = tiles * (s + a.overhead_ms / 1000)
        store = tiles * side * side * 4
        print(f"{name}: tile {side} x {side} in {s:.2f} s on one core ({side * side / s / 1e6:.2f} M pairs/s); "
              f"{tiles:,} tiles, store {store / 1e12:.2f} TB; {core_seconds / 3600:,.0f} core-hours; "
              f"{core_seconds / 86400:,.0f} cores for 24 hours", flush=True)


if __name__ == "__main__":
    main()
