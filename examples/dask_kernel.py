"""ntkit on Dask, end to end on a LocalCluster (docs/distributed.md): the FCN's infinite-width NTK of
4,000 Fashion-MNIST training images tile by tile into a Zarr store, the same call again (nothing
left to compute), and Nyström kernel ridge with K(X, C) on the workers, scored on 1,000 test images.

    build-py/venv/bin/python examples/dask_kernel.py [store directory, default: a temporary one]
"""
import gzip
import os
import sys
import tempfile
import time

import numpy as np

import dask.array as da
from distributed import Client, LocalCluster

import ntkit
import ntkit.dask as nd

FCN = ", ".join(["Dense(512, W_std=1.4142135623730951, b_std=0.05), Relu"] * 3 + ["Dense(1)"])
DATA = "/usr/share/datasets/fashion-mnist"


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=16 if "images" in name else 8)


def main():
    x = idx("train-images-idx3-ubyte.gz").reshape(-1, 784)[:4000] / 255.0
    y = idx("train-labels-idx1-ubyte.gz")[:4000]
    xt = idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784)[:1000] / 255.0
    yt = idx("t10k-labels-idx1-ubyte.gz")[:1000]
    store = os.path.join(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(), "fcn4k.zarr")
    client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None))
    net = ntkit.Network(FCN, input_shape=(784,))

    t0 = time.perf_counter()
    run = nd.kernel(store, net, x, tile=1000, client=client)
    print(f"kernel {run.array.shape} into {store}: {run.computed} tiles computed, {run.skipped} found, "
          f"{time.perf_counter() - t0:.1f} s")
    again = nd.kernel(store, net, x, tile=1000, client=client)
    print(f"the same call again: {again.computed} tiles computed, {again.skipped} found")
    k = run.array.compute()
    print("equal to ntkit.kernel in one process, bit for bit:", np.array_equal(k, ntkit.kernel(net, x)))

    # Nyström on 500 centers: K(X, C) computed and kept on the workers, CG on the client.
    centers = np.sort(np.random.default_rng(0).choice(len(x), 500, replace=False))
    x_rows = client.scatter(x, broadcast=False)  # the inputs sent once, not embedded in the graph
    k_nm = nd.kernel_rows(net, da.from_delayed(x_rows, shape=x.shape, dtype=x.dtype).rechunk((1000, -1)), x[centers])
    onehot = np.eye(10)[y]
    fit = nd.nystrom_ridge(k_nm, k[np.ix_(centers, centers)], onehot, ridge=1e-3,
                           mean_diagonal=float(np.mean(np.diag(k))), tolerance=1e-8, client=client)
    pred = ntkit.kernel(net, xt, x[centers]) @ fit.alpha
    print(f"Nystrom, 500 centers: {fit.iterations} CG iterations, test accuracy {np.mean(pred.argmax(1) == yt):.3f}")
    client.close()


if __name__ == "__main__":
    main()
