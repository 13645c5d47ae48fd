"""Infinite-width NNGP and NTK kernels by JAX neural-tangents, the oracle of test_nt_kernels.py.

Runs under the venv of scripts/install-nt.sh (build-nt/venv/bin/python), never under the system
python. ARCHS below pairs each architecture's ntkit spec with the same network written in
neural-tangents' stax; the test reads the specs from here (importing this file needs no JAX) and
runs this file for the neural-tangents side:

  nt_kernel.py ARCH --x1 X1.npy [--x2 X2.npy] --nngp NNGP.npy --ntk NTK.npy
  nt_kernel.py --jobs JOBS.json   # a list of {"arch", "x1", "x2" (or null), "nngp", "ntk"}
  nt_kernel.py --check            # exit 0 iff neural-tangents imports
  nt_kernel.py --list             # the architecture names

Kernels are written as (N1, N2) float64 .npy files (jax_enable_x64); x2 omitted means x2 = x1.

Translation rules (ntkit -> stax):
  Dense(out, W_std, b_std, parameterization)  -> stax.Dense(out, W_std, b_std, parameterization)
                                                 (ntkit b_std omitted/none = nt b_std=None)
  Conv(out, k, stride=s, padding=P)           -> stax.Conv(out, (k, k), (s, s), P) (NHWC, HWIO)
  AvgPool(w, stride=s, padding=P)             -> stax.AvgPool((w, w), (s, s), P); nt's stride
                                                 defaults to 1, ntkit's to the window: pass it
  Gelu (exact)                                -> stax.Gelu(approximate=False)
  Tanh, Sigmoid                               -> stax.ElementwiseNumerical(fn, deg=25) (nt has
                                                 no closed form; its Sigmoid_like is erf-based)
  LayerNorm (over channels)                   -> stax.LayerNorm(axis=-1)
  Residual(block...)                          -> FanOut(2), parallel(Identity, block), FanInSum
"""
import argparse
import importlib.util
import json
import warnings
from pathlib import Path

stax = jnp = None  # imported by _import_nt(), so the test can read ARCHS without JAX


def _import_nt():
    """Imports jax (float64) and neural_tangents.stax into the module globals, by the package's
    ntkit/demo/nt_worker.py (loaded by path: this venv has no ntkit), which imports neural-tangents
    without its TensorFlow bridge (install-nt.sh does not install TensorFlow, ~600 MB, unused here)."""
    global stax, jnp
    path = Path(__file__).resolve().parents[2] / "python" / "ntkit" / "demo" / "nt_worker.py"
    spec = importlib.util.spec_from_file_location("ntkit_nt_worker", path)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    jax, stax, _ = worker.import_nt(x64=True)
    jnp = jax.numpy


# ---------------------------------------------------------------------------------------------
# Architectures: name -> (input kind, ntkit spec, stax builder). Widths do not matter for the
# infinite-width kernel except under standard parameterization (Θ gains fan_in · Σ per layer).

def _residual(*block):
    return stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.serial(*block)),
                       stax.FanInSum())


def _relu_mlp_nt(depth, W_std, b_std):
    return [stax.Dense(16, W_std, b_std), stax.Relu()] * depth + [stax.Dense(1, W_std, b_std)]


ARCHS = {
    "relu_ntk_bias": (
        "vec",
        "Dense(16, W_std=1.5, b_std=0.3), Relu, Dense(16, W_std=1.5, b_std=0.3), Relu, "
        "Dense(1, W_std=1.5, b_std=0.3)",
        lambda: stax.serial(*_relu_mlp_nt(2, 1.5, 0.3))),
    "relu_ntk_nobias": (
        "vec",
        "Dense(16, W_std=1.4), Relu, Dense(16, W_std=1.4), Relu, Dense(1)",
        lambda: stax.serial(stax.Dense(16, 1.4), stax.Relu(), stax.Dense(16, 1.4), stax.Relu(),
                            stax.Dense(1))),
    # Standard parameterization: hidden widths 16 and 8 enter Θ; b_std=0 is a bias (nt 0.),
    # unlike b_std=none (nt None).
    "relu_standard": (
        "vec",
        "Dense(16, W_std=1.3, b_std=0.2, parameterization=standard), Relu, "
        "Dense(8, W_std=1.1, b_std=0, parameterization=standard), Relu, "
        "Dense(1, W_std=0.9, parameterization=standard)",
        lambda: stax.serial(stax.Dense(16, 1.3, 0.2, parameterization="standard"), stax.Relu(),
                            stax.Dense(8, 1.1, 0., parameterization="standard"), stax.Relu(),
                            stax.Dense(1, 0.9, None, parameterization="standard"))),
    "erf": (
        "vec",
        "Dense(16, W_std=1.2, b_std=0.1), Erf, Dense(16, W_std=1.2, b_std=0.1), Erf, Dense(1)",
        lambda: stax.serial(stax.Dense(16, 1.2, 0.1), stax.Erf(), stax.Dense(16, 1.2, 0.1),
                            stax.Erf(), stax.Dense(1))),
    "gelu": (
        "vec",
        "Dense(16, b_std=0.1), Gelu, Dense(16, b_std=0.1), Gelu, Dense(1)",
        lambda: stax.serial(stax.Dense(16, 1., 0.1), stax.Gelu(approximate=False),
                            stax.Dense(16, 1., 0.1), stax.Gelu(approximate=False),
                            stax.Dense(1))),
    "leaky_relu": (
        "vec",
        "Dense(16, W_std=1.3, b_std=0.2), LeakyRelu(0.1), Dense(16, W_std=1.3), LeakyRelu(0.1), "
        "Dense(1)",
        lambda: stax.serial(stax.Dense(16, 1.3, 0.2), stax.LeakyRelu(0.1), stax.Dense(16, 1.3),
                            stax.LeakyRelu(0.1), stax.Dense(1))),
    "abs": (
        "vec",
        "Dense(16, b_std=0.2), Abs, Dense(16), Abs, Dense(1)",
        lambda: stax.serial(stax.Dense(16, 1., 0.2), stax.Abs(), stax.Dense(16), stax.Abs(),
                            stax.Dense(1))),
    "tanh": (
        "vec",
        "Dense(16, b_std=0.1), Tanh, Dense(16, b_std=0.1), Tanh, Dense(1)",
        lambda: stax.serial(stax.Dense(16, 1., 0.1), stax.ElementwiseNumerical(jnp.tanh, 25),
                            stax.Dense(16, 1., 0.1), stax.ElementwiseNumerical(jnp.tanh, 25),
                            stax.Dense(1))),
    "sigmoid": (
        "vec",
        "Dense(16, W_std=1.5, b_std=0.1), Sigmoid, Dense(16, W_std=1.5), Sigmoid, Dense(1)",
        lambda: stax.serial(stax.Dense(16, 1.5, 0.1),
                            stax.ElementwiseNumerical(_sigmoid, 25),
                            stax.Dense(16, 1.5), stax.ElementwiseNumerical(_sigmoid, 25),
                            stax.Dense(1))),
    "layernorm_mlp": (
        "vec",
        "Dense(16, W_std=1.2, b_std=0.5), Relu, Dense(16), LayerNorm, Relu, Dense(1, b_std=0.1)",
        lambda: stax.serial(stax.Dense(16, 1.2, 0.5), stax.Relu(), stax.Dense(16),
                            stax.LayerNorm(axis=-1), stax.Relu(), stax.Dense(1, 1., 0.1))),
    "residual_mlp": (
        "vec",
        "Dense(16, b_std=0.1), Residual(Relu, Dense(16, W_std=1.2, b_std=0.2)), "
        "Residual(Relu, Dense(16, W_std=0.8)), Relu, Dense(1)",
        lambda: stax.serial(stax.Dense(16, 1., 0.1),
                            _residual(stax.Relu(), stax.Dense(16, 1.2, 0.2)),
                            _residual(stax.Relu(), stax.Dense(16, 0.8)),
                            stax.Relu(), stax.Dense(1))),
    "deep_relu_12": (
        "vec",
        ", ".join(["Dense(16, W_std=1.5, b_std=0.05), Relu"] * 12 + ["Dense(1, W_std=1.5, b_std=0.05)"]),
        lambda: stax.serial(*_relu_mlp_nt(12, 1.5, 0.05))),
    "cnn_gap": (
        "img",
        "Conv(8, 3, padding=SAME, W_std=1.4, b_std=0.1), Relu, "
        "Conv(8, 3, padding=SAME, W_std=1.4, b_std=0.1), Relu, GlobalAvgPool, Dense(1)",
        lambda: stax.serial(stax.Conv(8, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu(),
                            stax.Conv(8, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu(),
                            stax.GlobalAvgPool(), stax.Dense(1))),
    "cnn_flatten": (
        "img",
        "Conv(8, 3, padding=SAME, W_std=1.3, b_std=0.2), Erf, Conv(8, 3, W_std=1.3), Relu, "
        "Flatten, Dense(1, b_std=0.1)",
        lambda: stax.serial(stax.Conv(8, (3, 3), padding="SAME", W_std=1.3, b_std=0.2), stax.Erf(),
                            stax.Conv(8, (3, 3), W_std=1.3), stax.Relu(),
                            stax.Flatten(), stax.Dense(1, 1., 0.1))),
    "cnn_strided_valid": (
        "img",
        "Conv(8, 3, stride=2, padding=VALID, W_std=1.4, b_std=0.1), Relu, Conv(8, 2, W_std=1.4), "
        "Relu, Flatten, Dense(1)",
        lambda: stax.serial(stax.Conv(8, (3, 3), (2, 2), "VALID", W_std=1.4, b_std=0.1), stax.Relu(),
                            stax.Conv(8, (2, 2), W_std=1.4), stax.Relu(),
                            stax.Flatten(), stax.Dense(1))),
    # Strided SAME on 6x6 pads 0 before, 1 after (TensorFlow's rule); the GAP readout needs the
    # full pixel-pair covariance through the strided layers.
    "cnn_strided_same_gap": (
        "img",
        "Conv(8, 3, stride=2, padding=SAME, W_std=1.4, b_std=0.1), Relu, "
        "Conv(8, 2, stride=1, padding=SAME, W_std=1.4), Relu, GlobalAvgPool, Dense(1)",
        lambda: stax.serial(stax.Conv(8, (3, 3), (2, 2), "SAME", W_std=1.4, b_std=0.1), stax.Relu(),
                            stax.Conv(8, (2, 2), (1, 1), "SAME", W_std=1.4), stax.Relu(),
                            stax.GlobalAvgPool(), stax.Dense(1))),
    "cnn_avgpool": (
        "img",
        "Conv(8, 3, padding=SAME, W_std=1.4, b_std=0.1), Relu, AvgPool(2), "
        "Conv(8, 3, padding=SAME, W_std=1.4), Relu, GlobalAvgPool, Dense(1)",
        lambda: stax.serial(stax.Conv(8, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu(),
                            stax.AvgPool((2, 2), (2, 2), "VALID"),
                            stax.Conv(8, (3, 3), padding="SAME", W_std=1.4), stax.Relu(),
                            stax.GlobalAvgPool(), stax.Dense(1))),
    # Overlapping SAME pooling, then Flatten: nt divides by the full window at the edges
    # (normalize_edges=False, its default).
    "cnn_avgpool_same_flatten": (
        "img",
        "Conv(8, 3, W_std=1.4, b_std=0.1), Relu, AvgPool(3, stride=2, padding=SAME), Flatten, "
        "Dense(1)",
        lambda: stax.serial(stax.Conv(8, (3, 3), W_std=1.4, b_std=0.1), stax.Relu(),
                            stax.AvgPool((3, 3), (2, 2), "SAME"), stax.Flatten(), stax.Dense(1))),
    "cnn_layernorm_residual": (
        "img",
        "Conv(8, 3, padding=SAME, b_std=0.1), Residual(Relu, Conv(8, 3, padding=SAME, W_std=1.3)), "
        "LayerNorm, Relu, Conv(8, 3, padding=SAME), Relu, GlobalAvgPool, Dense(1)",
        lambda: stax.serial(stax.Conv(8, (3, 3), padding="SAME", b_std=0.1),
                            _residual(stax.Relu(), stax.Conv(8, (3, 3), padding="SAME", W_std=1.3)),
                            stax.LayerNorm(axis=-1), stax.Relu(),
                            stax.Conv(8, (3, 3), padding="SAME"), stax.Relu(),
                            stax.GlobalAvgPool(), stax.Dense(1))),
    "deep_cnn_10": (
        "img",
        ", ".join(["Conv(8, 3, padding=SAME, W_std=1.4, b_std=0.05), Relu"] * 10
                  + ["GlobalAvgPool", "Dense(1)"]),
        lambda: stax.serial(*[stax.Conv(8, (3, 3), padding="SAME", W_std=1.4, b_std=0.05),
                              stax.Relu()] * 10, stax.GlobalAvgPool(), stax.Dense(1))),
}


def _sigmoid(x):
    return 1 / (1 + jnp.exp(-x))


# ---------------------------------------------------------------------------------------------

def compute(arch, x1_path, x2_path, nngp_path, ntk_path):
    import numpy as np
    x1 = np.load(x1_path).astype(np.float64)
    x2 = None if x2_path is None else np.load(x2_path).astype(np.float64)
    with warnings.catch_warnings():  # ElementwiseNumerical warns that it is numerical
        warnings.simplefilter("ignore")
        _, _, kernel_fn = ARCHS[arch][2]()
    k = kernel_fn(x1, x2, ("nngp", "ntk"))
    for value, path in ((k.nngp, nngp_path), (k.ntk, ntk_path)):
        value = np.asarray(value, dtype=np.float64)
        assert value.ndim == 2 and value.shape == (x1.shape[0], (x1 if x2 is None else x2).shape[0])
        np.save(path, value)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arch", nargs="?", choices=sorted(ARCHS))
    p.add_argument("--x1")
    p.add_argument("--x2")
    p.add_argument("--nngp")
    p.add_argument("--ntk")
    p.add_argument("--jobs", help="JSON file: a list of {arch, x1, x2, nngp, ntk}")
    p.add_argument("--check", action="store_true", help="exit 0 iff neural-tangents imports")
    p.add_argument("--list", action="store_true", help="print the architecture names")
    a = p.parse_args()
    if a.list:
        print("\n".join(ARCHS))
        return
    _import_nt()
    if a.check:
        import jax
        import importlib.metadata as md
        print(f"neural-tangents {md.version('neural-tangents')}, jax {jax.__version__}, "
              f"float64 {jax.config.jax_enable_x64}")
        return
    if a.jobs:
        with open(a.jobs) as f:
            jobs = json.load(f)
    elif a.arch and a.x1 and a.nngp and a.ntk:
        jobs = [{"arch": a.arch, "x1": a.x1, "x2": a.x2, "nngp": a.nngp, "ntk": a.ntk}]
    else:
        p.error("give ARCH --x1 --nngp --ntk, or --jobs, --check or --list")
    for j in jobs:
        compute(j["arch"], j["x1"], j.get("x2"), j["nngp"], j["ntk"])


if __name__ == "__main__":
    main()
