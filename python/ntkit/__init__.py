"""ntkit: neural tangent kernels in C++, from Python.

    net = ntkit.Network("Dense(512), Relu, Dense(10)", input_shape=(784,))
    params = net.init(seed=0)
    k = ntkit.empirical_ntk(net, params, x, mode="pntk")        # (N, N)
    k_inf = ntkit.kernel(net, x)                                  # infinite-width NTK
    f = ntkit.features.NTKSketch(8192, depth=2).fit_transform(x)  # F Fᵀ ≈ NTK
    r = ntkit.kernel_ridge(k_train, y_train, k_test, y_test, ridge="auto")

Arrays are NumPy (float32 or float64; C-contiguous inputs of the compute dtype are read in place)
or .npy / IDX paths. Errors: ValueError (bad input, spec or argument), NotImplementedError
(unsupported combination), MemoryError (over max_memory), OSError (files), FloatingPointError
(overflow), RuntimeError (anything else), with the command line's messages.
"""
import os

from . import features
from ._util import load
from ._core import __version__, num_threads, set_num_threads
from ._core import keep_freed_memory as _keep_freed_memory
from .kernels import empirical_ntk, kernel, plan_empirical_ntk
from .network import Network
from .solve import (RegressionResult, compare, feature_ridge, gp_inference, gradient_descent_mse, kernel_ridge,
                    pntk_report, spectrum)
from .features import CNTKSketch, GradientFeatures, NTKRF, NTKSketch


def keep_freed_memory(keep: bool = True) -> None:
    """Whether glibc keeps freed blocks below 1 GiB in the heap for reuse (True, set at import)
    instead of returning them to the OS (False: glibc's defaults, 128 KiB thresholds).

    Process-wide. Kernel work allocates and frees the same large buffers again and again; returning
    them to the OS and faulting them in afresh made eNTK calls from Python up to 1.67x slower
    (bench/python_overhead.py). The cost of keeping: memory freed by anything in the process (NumPy
    arrays too) stays resident for reuse instead of shrinking RSS. Set NTKIT_KEEP_FREED_MEMORY=0 to
    import without it."""
    _keep_freed_memory(bool(keep))


if os.environ.get("NTKIT_KEEP_FREED_MEMORY", "1") != "0":
    keep_freed_memory(True)


def from_torch(module, input_shape, **kwargs):
    """(Network, params) from a PyTorch module: see ntkit.torch_import.from_torch."""
    from .torch_import import from_torch as _from_torch
    return _from_torch(module, input_shape, **kwargs)


__all__ = ["Network", "load", "empirical_ntk", "kernel", "plan_empirical_ntk", "features", "NTKSketch", "NTKRF", "CNTKSketch",
           "GradientFeatures", "kernel_ridge", "feature_ridge", "gradient_descent_mse", "gp_inference", "spectrum",
           "compare", "pntk_report", "RegressionResult", "from_torch", "set_num_threads", "num_threads", "keep_freed_memory",
           "__version__"]
