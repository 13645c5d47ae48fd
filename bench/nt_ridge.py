"""Peers of bench/tools/ridge_scale on the same kernel: neural-tangents' predict (t = inf, the
Cholesky path) and NumPy's LU solve (numpy.linalg.solve), float64, timed after loading.

    python nt_ridge.py K.npy labels.npy [--ridge 1e-4]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("k")
p.add_argument("labels")
p.add_argument("--ridge", type=float, default=1e-4)
p.add_argument("--peer", choices=["nt", "numpy"], default="nt")
a = p.parse_args()
k = np.load(a.k)
labels = np.load(a.labels)
n = k.shape[0]
y = np.zeros((n, 10))
y[np.arange(n), labels[:n].astype(int)] = 1.0
t0 = time.perf_counter()
if a.peer == "nt":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
    import nt_kernel  # its importer skips neural-tangents' TensorFlow bridge
    nt_kernel._import_nt()
    from neural_tangents import predict
    fn = predict.gradient_descent_mse(k, y, diag_reg=a.ridge)
    _, pred = fn(t=None, fx_train_0=0.0, fx_test_0=0.0, k_test_train=k)
    pred = np.asarray(pred)
else:
    lam = a.ridge * np.trace(k) / n
    k[np.diag_indices(n)] += lam  # NumPy has no Cholesky solve: LU, 2N³/3 FLOPs against N³/3
    alpha = np.linalg.solve(k, y)
    k[np.diag_indices(n)] -= lam
    pred = k @ alpha
secs = time.perf_counter() - t0
acc = np.mean(pred.argmax(1) == labels[:n])
print(f"{a.peer}: {secs:.2f} s (solve, after loading); train accuracy {acc:.4f}")
