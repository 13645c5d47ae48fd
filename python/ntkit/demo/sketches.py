"""Part 3, Zandieh et al. (2021): kernel ridge regression with the exact infinite-width NTK / CNTK
against ridge regression on the feature maps that approximate them (NTKSketch, NTKRF, CNTKSketch),
and with a trained network's pNTK against its gradient sketch, as the feature dimension m grows:
test accuracy, time (kernel or features, plus the solve) and the speed-up over the exact kernel.

The ridge is chosen the same way everywhere (ridge="auto": on the last 10% of the training rows,
then refit on all). Features are solved through the m x m system while m <= N and through the
N x N kernel F Fᵀ beyond, whichever is smaller."""
from typing import Any, Callable, Dict, List

import numpy as np

import ntkit

from . import nets
from .common import Data, Progress, Sizes, timed
from .pntk_width import train

SQRT2 = 2 ** 0.5
# CountSketch projects a P-vector in O(P): on this MLP (P = 670k) 6x faster than the default SRHT
# (a real FFT of the padded gradient per example), as accurate in the README's gradient table.
GRADIENT_PROJECTION = "countsketch"


def ntk_spec(depth: int = 2) -> str:
    """The network whose infinite-width NTK NTKSketch and NTKRF approximate (their docstrings)."""
    return ", ".join([f"Dense(512, W_std={SQRT2}, b_std=none), Relu"] * depth + ["Dense(1, W_std=1, b_std=none)"])


def cntk_spec(depth: int = 3) -> str:
    """The CNTK with global average pooling that CNTKSketch approximates (3 x 3 SAME filters)."""
    conv = f"Conv(8, 3, padding=SAME, W_std={SQRT2}, b_std=none), Relu"
    return ", ".join([conv] * depth + ["GlobalAvgPool, Dense(1, W_std=1, b_std=none)"])


def ridge_on_kernel(k_train, k_test, y_train, y_test, threads):
    r = ntkit.kernel_ridge(k_train, y_train, k_test, y_test, ridge="auto", threads=threads)
    return {"test_accuracy": r.test_accuracy, "ridge": r.ridge}


def ridge_on_features(f_train, f_test, y_train, y_test, threads):
    if f_train.shape[1] <= f_train.shape[0]:
        r = ntkit.feature_ridge(f_train, y_train, f_test, y_test, ridge="auto", threads=threads)
        return {"test_accuracy": r.test_accuracy, "ridge": r.ridge, "solved_as": "features (m x m)"}
    f_train, f_test = f_train.astype(np.float64), f_test.astype(np.float64)
    out = ridge_on_kernel(f_train @ f_train.T, f_test @ f_train.T, y_train, y_test, threads)
    out["solved_as"] = "kernel F Fᵀ (N x N)"
    return out


def exact_row(name: str, kernels: Callable[[], tuple], y_train, y_test, threads) -> Dict[str, Any]:
    (k_train, k_test), kernel_s = timed(kernels)
    fit, solve_s = timed(lambda: ridge_on_kernel(k_train, k_test, y_train, y_test, threads))
    return dict(method=name, m=None, kernel_seconds=kernel_s, solve_seconds=solve_s,
                total_seconds=kernel_s + solve_s, **fit)


def sketch_rows(name: str, make: Callable[[int], Callable[[], tuple]], dims: List[int], exact: Dict[str, Any],
                y_train, y_test, threads, progress: Progress) -> List[Dict[str, Any]]:
    rows = []
    for m in dims:
        (f_train, f_test), feature_s = timed(make(m))
        fit, solve_s = timed(lambda: ridge_on_features(f_train, f_test, y_train, y_test, threads))
        total = feature_s + solve_s
        rows.append(dict(method=name, m=m, features_seconds=feature_s, solve_seconds=solve_s, total_seconds=total,
                         speedup=exact["total_seconds"] / total, **fit))
        progress(f"  {name} m={m}: accuracy {fit['test_accuracy']:.3f} in {total:.1f} s "
                 f"(exact {exact['test_accuracy']:.3f} in {exact['total_seconds']:.1f} s)")
    return rows


def fitted(cls, **kw):
    """A feature map's (train, test) features: fit on the training images, transform both."""
    def features(x_train, x_test):
        def go():
            f = cls(**kw).fit(x_train)
            return f.transform(x_train), f.transform(x_test)
        return go
    return features


def run(data: Data, sizes: Sizes, threads: int, progress: Progress) -> Dict[str, Any]:
    progress("part 3: exact kernels against their sketches and random features")
    out: Dict[str, Any] = {}

    # Infinite-width NTK of a depth-2 ReLU MLP on flattened images.
    n, nt = sizes.ntk_n
    x_train, y_train, x_test, y_test = data.split(n, nt, flat=True)
    net = ntkit.Network(ntk_spec(), (784,))
    exact = exact_row("exact NTK", lambda: (ntkit.kernel(net, x_train, threads=threads),
                                            ntkit.kernel(net, x_test, x_train, threads=threads)),
                      y_train, y_test, threads)
    progress(f"  exact NTK: accuracy {exact['test_accuracy']:.3f} in {exact['total_seconds']:.1f} s")
    rows = [exact]
    for name, cls in (("NTKSketch", ntkit.NTKSketch), ("NTKRF", ntkit.NTKRF)):
        rows += sketch_rows(name, lambda m, cls=cls: fitted(cls, n_components=m, depth=2, random_state=0,
                                                            threads=threads)(x_train, x_test),
                            sizes.ntk_dims, exact, y_train, y_test, threads, progress)
    out["ntk"] = {"spec": ntk_spec(), "n_train": n, "n_test": nt, "input": "flattened 28 x 28 images", "rows": rows}

    # Infinite-width CNTK with global average pooling, on average-pooled images.
    n, nt = sizes.cntk_n
    x_train, y_train, x_test, y_test = data.split(n, nt, pool=sizes.cntk_pool)
    h = x_train.shape[1]
    cnet = ntkit.Network(cntk_spec(), (h, h, 1))
    exact = exact_row("exact CNTK", lambda: (ntkit.kernel(cnet, x_train, threads=threads),
                                             ntkit.kernel(cnet, x_test, x_train, threads=threads)),
                      y_train, y_test, threads)
    progress(f"  exact CNTK: accuracy {exact['test_accuracy']:.3f} in {exact['total_seconds']:.1f} s")
    rows = [exact] + sketch_rows("CNTKSketch", lambda m: fitted(ntkit.CNTKSketch, n_components=m, depth=3, random_state=0,
                                                                 threads=threads)(x_train, x_test),
                                 sizes.cntk_dims, exact, y_train, y_test, threads, progress)
    out["cntk"] = {"spec": cntk_spec(), "n_train": n, "n_test": nt, "input": f"images average-pooled to {h} x {h}",
                   "rows": rows}

    # A trained finite network: its pNTK against the gradient sketch of the same kernel.
    n, nt = sizes.ntk_n
    x_train, y_train, x_test, y_test = data.split(n, nt, flat=True)
    model = nets.build("mlp", sizes.gradient_width, seed=0)
    training = train(model, data, sizes, threads)
    gnet, params = ntkit.from_torch(model, (784,))
    exact = exact_row("exact pNTK", lambda: (ntkit.empirical_ntk(gnet, params, x_train, mode="pntk", threads=threads),
                                             ntkit.empirical_ntk(gnet, params, x_test, x_train, mode="pntk",
                                                                 threads=threads)),
                      y_train, y_test, threads)
    progress(f"  exact pNTK: accuracy {exact['test_accuracy']:.3f} in {exact['total_seconds']:.1f} s")

    def gradient(m):
        def go():
            f = ntkit.GradientFeatures(gnet, m, projection=GRADIENT_PROJECTION, random_state=0, threads=threads).fit(x_train)
            return f.transform(x_train, params=params), f.transform(x_test, params=params)
        return go
    rows = [exact] + sketch_rows("gradient sketch", gradient, sizes.ntk_dims, exact, y_train, y_test, threads, progress)
    out["gradient"] = {"spec": gnet.describe(), "num_params": gnet.num_params, "n_train": n, "n_test": nt,
                       "training": training, "rows": rows}
    return out
