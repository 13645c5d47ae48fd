"""The ntkit package (python/ntkit) against the `ntk` command line built from the same sources, against
NumPy oracles, and on its own contracts (DESIGN.md section 1, "Python ntkit" and "Arrays").

  CLI agreement, exact (np.array_equal; the JSON reports equal as parsed objects), threads=2 on both
  sides: init (network-wide W_std / b_std / parameterization, float32 and float64), apply (float32,
  float64, integer inputs), entk (modes full, trace, pntk, logit=1, diagonal, nngp; methods jc, vp,
  sd, auto; with and without x2), the plan (--explain), kernel (ntk, nngp), features (ntk, ntkrf,
  cntk, gradient), regress (predictions, train predictions and the --json report: float targets at
  several times, labels with ridge auto, absolute ridge), spectrum --json, compare --json and
  pntk-report --json (timings left out).
  NumPy oracles, float64: the full eNTK of a tiny tanh MLP = J Jᵀ with J by central differences of
  net.apply (<= 1e-7 relative); one Dense layer Θ = (x·x'/d + b_std²) I_O (<= 1e-12); the other
  modes as reductions of full (REFERENCE.md: trace = mean of the diagonal, pntk = (1/O) Σ_jk Θ_jk)
  and nngp=True = f(x1) f(x2)ᵀ (<= 1e-12); the infinite-width NNGP / NTK of a one-hidden-layer ReLU
  net by the arc-cosine formulas (<= 1e-10); kernel_ridge = KT (K + λI)⁻¹ Y by numpy.linalg.solve,
  gradient_descent_mse at t = inf (the same on the test set; y on the train set, nt's regularized
  dynamics) and at finite t by the eigendecomposition of K + λI with the loss normalized by y.size,
  gp_inference (nt.predict's posterior formulas), feature_ridge = kernel ridge on F Fᵀ, spectrum and
  compare by numpy.linalg (<= 1e-8 relative; 1e-6 where an unregularized K⁻¹ enters); the sketches
  against the exact kernel they approximate (relative Frobenius error <= 0.25 at 8192 features).
  Contracts: shapes and dtypes (float32 in -> float32 out, float64 -> float64, dtype= overrides);
  errors (ValueError with the CLI's message, OSError, MemoryError, NotImplementedError, and bad
  keyword values); out-of-core results are numpy.memmap equal to the in-memory ones; inputs and the
  parameters init() returns are read in place (peak RSS in a subprocess, with a control that must
  grow) and outputs are writable and
  share no memory with the inputs; progress callbacks, exceptions raised in them (no output file
  left), the GIL released during a computation; transposed, strided, big-endian, float16 and
  integer inputs give the result of the contiguous float copy.

The ntk binary is the one installed beside the package's Python (sys.prefix/bin/ntk).
"""
import inspect
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ntkit

NTK = Path(sys.prefix) / "bin" / "ntk"
THREADS = 2
MLP, MLP_SHAPE, MLP_B = "Dense(16), Relu, Dense(3)", (6,), 0.1
CNN, CNN_SHAPE = "Conv(4, 3, padding=SAME), Relu, AvgPool(2), Conv(4, 3), Relu, GlobalAvgPool, Dense(2)", (8, 8, 2)
MODE_SHAPES = {"full": lambda n1, n2, o: (n1, n2, o, o), "trace": lambda n1, n2, o: (n1, n2),
               "trace-sum": lambda n1, n2, o: (n1, n2), "pntk": lambda n1, n2, o: (n1, n2),
               "logit=1": lambda n1, n2, o: (n1, n2), "diagonal": lambda n1, n2, o: (n1, n2, o)}


# ---------------------------------------------------------------------------------------------
# Helpers


def cli(*args):
    """Runs `ntk args...`; returns its stdout, failing the test on a non-zero exit."""
    r = subprocess.run([str(NTK), *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"ntk {' '.join(map(str, args))}: {r.stderr}"
    return r.stdout


def cli_error(*args) -> str:
    """The message of a failing `ntk args...`: its stderr line after 'error: '."""
    r = subprocess.run([str(NTK), *map(str, args)], capture_output=True, text=True)
    assert r.returncode != 0, f"ntk {' '.join(map(str, args))} succeeded"
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), r.stderr
    return line[len("error: "):]


def save(d: Path, **arrays) -> dict:
    """Each array as d/<name>.npy; returns the paths by name."""
    paths = {}
    for name, a in arrays.items():
        paths[name] = d / f"{name}.npy"
        np.save(paths[name], a)
    return paths


def save_params(d: Path, net, seed=0) -> Path:
    """net.init(seed) as d/p.npz (the .npz layout `ntk init` writes)."""
    np.savez(d / "p.npz", **net.init(seed))
    return d / "p.npz"


def rel(a, b) -> float:
    """max|a - b| / max|b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def without(report, *drop):
    """A JSON report without the keys in `drop` (at any depth)."""
    if isinstance(report, dict):
        return {k: without(v, *drop) for k, v in report.items() if not any(d in k for d in drop)}
    return report


def listing(d: Path):
    return sorted(p.name for p in d.iterdir())


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20261130)
    return dict(x1=rng.standard_normal((12, 6)).astype(np.float32), x2=rng.standard_normal((7, 6)).astype(np.float32),
                img1=rng.standard_normal((10,) + CNN_SHAPE).astype(np.float32),
                img2=rng.standard_normal((5,) + CNN_SHAPE).astype(np.float32))


@pytest.fixture(scope="module")
def mlp():
    return ntkit.Network(MLP, MLP_SHAPE, b_std=MLP_B)


@pytest.fixture(scope="module")
def cnn():
    return ntkit.Network(CNN, CNN_SHAPE)


@pytest.fixture(scope="module")
def regression():
    """A positive definite kernel (the infinite-width NTK of an MLP) split into train / test, targets and labels."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 5))
    k = ntkit.kernel(ntkit.Network("Dense(32, b_std=0.1), Relu, Dense(1)", (5,)), x, threads=THREADS)
    n = 30
    return dict(K=np.ascontiguousarray(k[:n, :n]), KT=np.ascontiguousarray(k[n:, :n]),
                KTT=np.ascontiguousarray(k[n:, n:]),
                Y=rng.standard_normal((n, 2)), YT=rng.standard_normal((10, 2)),
                L=rng.integers(0, 3, n).astype(np.int64), LT=rng.integers(0, 3, 10).astype(np.int32))


# ---------------------------------------------------------------------------------------------
# 1. The public API: every name, shapes and dtypes


def test_every_public_name_exists_and_version_matches_cli():
    for name in ntkit.__all__:
        assert hasattr(ntkit, name), name
    for cls in ("NTKSketch", "NTKRF", "CNTKSketch", "GradientFeatures"):
        assert getattr(ntkit.features, cls) is getattr(ntkit, cls)
    assert cli("--version").split() == ["ntk", ntkit.__version__]


def test_num_threads_round_trip():
    default = ntkit.num_threads()
    assert default >= 1
    try:
        ntkit.set_num_threads(1)
        assert ntkit.num_threads() == 1
        ntkit.set_num_threads(3)
        assert ntkit.num_threads() == 3
    finally:
        ntkit.set_num_threads(0)  # 0: all cores again
    assert ntkit.num_threads() == default


def test_network_info(mlp, cnn):
    assert mlp.output_shape == (3,) and mlp.input_shape == MLP_SHAPE
    assert mlp.param_shapes == {"0.W": (6, 16), "0.b": (16,), "2.W": (16, 3), "2.b": (3,)}
    assert mlp.num_params == 6 * 16 + 16 + 16 * 3 + 3
    assert cnn.output_shape == (2,)
    assert cnn.param_shapes == {"0.W": (3, 3, 2, 4), "3.W": (3, 3, 4, 4), "6.W": (4, 2)}  # b_std none: no biases
    assert cnn.num_params == sum(int(np.prod(s)) for s in cnn.param_shapes.values())
    # summary: one line per layer with its output shape, and the total
    lines = mlp.summary().splitlines()
    assert any("Dense(16" in l and "(16,)" in l and "112 params" in l for l in lines)
    assert any("Relu" in l for l in lines)
    assert f"{mlp.num_params} params in total" in mlp.summary()
    # describe: the spec with every argument spelled out; it builds the same network, and describes itself
    d = mlp.describe()
    assert "b_std=0.1" in d and "parameterization=ntk" in d and "W_std=1" in d
    again = ntkit.Network(d, MLP_SHAPE)
    assert again.describe() == d and again.param_shapes == mlp.param_shapes and again.num_params == mlp.num_params
    # repr: the constructor call, which builds the same network again
    r = repr(mlp)
    assert r == f"Network({MLP!r}, input_shape=(6,), b_std=0.1)"
    assert eval(r, {"Network": ntkit.Network}).describe() == mlp.describe()
    std = ntkit.Network("Dense(4)", 3, W_std=2.0, parameterization="standard")
    assert std.input_shape == (3,)
    assert repr(std).startswith("Network('Dense(4)', input_shape=(3,), W_std=2, parameterization='standard')")
    assert "parameterization=standard" in std.describe() and "W_std=2" in std.describe()


def test_init(mlp):
    p = mlp.init(seed=3)
    assert set(p) == set(mlp.param_shapes)
    for k, a in p.items():
        assert a.shape == mlp.param_shapes[k] and a.dtype == np.float32 and a.flags.writeable and a.flags.c_contiguous
    p64 = mlp.init(seed=3, dtype="float64")
    assert all(p64[k].dtype == np.float64 for k in p64)
    for k in p:  # float32 parameters are the float64 ones rounded; the same on any thread count
        assert np.array_equal(p[k], p64[k].astype(np.float32))
        assert np.array_equal(p[k], mlp.init(3, threads=1)[k])
    assert not np.array_equal(p["0.W"], mlp.init(4)["0.W"])
    w = p64["0.W"]  # N(0, 1) under NTK parameterization
    assert abs(w.mean()) < 0.5 and 0.6 < w.std() < 1.4


def test_apply_shapes_dtypes_and_params(mlp, cnn, data, tmp_path):
    x = data["x1"]
    p = mlp.init(5)
    y = mlp.apply(p, x)
    assert y.shape == (12, 3) and y.dtype == np.float32
    assert mlp.apply(p, x.astype(np.float64)).dtype == np.float64
    assert mlp.apply(p, x.astype(np.float64), dtype="float32").dtype == np.float32
    y64 = mlp.apply(p, x, dtype="float64")
    assert y64.dtype == np.float64 and rel(y, y64) < 1e-5
    # params: a dict, an int seed (drawn as init(seed)), or a .npz path
    assert np.array_equal(mlp.apply(5, x), y)
    np.savez(tmp_path / "p.npz", **p)
    assert np.array_equal(mlp.apply(tmp_path / "p.npz", x), y)
    assert np.array_equal(mlp.apply(str(tmp_path / "p.npz"), x), y)
    # images (N, H, W, C)
    yi = cnn.apply(0, data["img1"])
    assert yi.shape == (10, 2) and yi.dtype == np.float32


@pytest.mark.parametrize("mode", list(MODE_SHAPES))
def test_entk_shapes_and_dtypes(mlp, data, mode):
    x1, x2 = data["x1"], data["x2"]
    k = ntkit.empirical_ntk(mlp, 0, x1, mode=mode, threads=THREADS)
    assert k.shape == MODE_SHAPES[mode](12, 12, 3) and k.dtype == np.float32
    k = ntkit.empirical_ntk(mlp, 0, x1, x2, mode=mode, threads=THREADS)
    assert k.shape == MODE_SHAPES[mode](12, 7, 3) and k.dtype == np.float32
    k64 = ntkit.empirical_ntk(mlp, 0, x1.astype(np.float64), x2.astype(np.float64), mode=mode, threads=THREADS)
    assert k64.dtype == np.float64 and rel(k, k64) < 1e-5
    assert ntkit.empirical_ntk(mlp, 0, x1, x2, mode=mode, dtype="float64").dtype == np.float64
    assert ntkit.empirical_ntk(mlp, 0, x1.astype(np.float64), mode=mode, dtype="float32").dtype == np.float32
    acc = ntkit.empirical_ntk(mlp, 0, x1, x2, mode=mode, accumulate_float64=True)
    assert acc.dtype == np.float32 and rel(acc, k64) < 1e-5
    nngp = ntkit.empirical_ntk(mlp, 0, x1, x2, mode=mode, nngp=True)
    assert nngp.shape == k.shape and nngp.dtype == np.float32


@pytest.mark.parametrize("mode", ["full", "trace", "pntk", "diagonal"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_entk_methods_agree(mlp, data, mode, symmetric):
    """jc, vp, sd agree to 1e-10 in float64, and auto is exactly the method the plan names."""
    x1 = data["x1"].astype(np.float64)
    x2 = None if symmetric else data["x2"].astype(np.float64)
    p = mlp.init(1, dtype="float64")
    ks = {m: ntkit.empirical_ntk(mlp, p, x1, x2, mode=mode, method=m, threads=THREADS) for m in ("jc", "vp", "sd")}
    for m in ("vp", "sd"):
        assert rel(ks[m], ks["jc"]) < 1e-10, m
    plan = ntkit.plan_empirical_ntk(mlp, x1, x2, mode=mode, threads=THREADS)
    chosen = plan.split("plan: method ")[1].split(",")[0]
    assert np.array_equal(ntkit.empirical_ntk(mlp, p, x1, x2, mode=mode, threads=THREADS), ks[chosen])
    if symmetric:  # the symmetric path against x2 = x1
        both = ntkit.empirical_ntk(mlp, p, x1, x1, mode=mode, method="jc", threads=THREADS)
        assert rel(ks["jc"], both) < 1e-12


def test_plan_empirical_ntk(mlp, data, tmp_path):
    x1, x2 = data["x1"], data["x2"]
    plan = ntkit.plan_empirical_ntk(mlp, x1, x2, mode="pntk")
    assert plan.startswith(f"eNTK of 12 x 7 examples, 3 outputs, {mlp.num_params} parameters, mode pntk")
    for m in ("jc", "vp", "sd"):
        assert f"\n  {m} " in plan
    assert "plan: method jc" in ntkit.plan_empirical_ntk(mlp, x1, method="jc")
    assert "symmetric" in ntkit.plan_empirical_ntk(mlp, x1)
    ooc = ntkit.plan_empirical_ntk(mlp, x1, out=tmp_path / "k.npy", out_of_core=True)
    assert "out of core" in ooc
    assert listing(tmp_path) == []  # planning computes and writes nothing


def test_kernel_shapes_dtypes(mlp, cnn, data):
    x1, x2 = data["x1"], data["x2"]
    for get in ("ntk", "nngp"):
        k = ntkit.kernel(mlp, x1, get=get, threads=THREADS)
        assert k.shape == (12, 12) and k.dtype == np.float64  # float64 by default, whatever the inputs
        assert np.allclose(k, k.T, rtol=0, atol=1e-14 * np.abs(k).max())
        k12 = ntkit.kernel(mlp, x1, x2, get=get, threads=THREADS)
        assert k12.shape == (12, 7) and k12.dtype == np.float64
        assert rel(ntkit.kernel(mlp, x1, x1, get=get), k) < 1e-12
        k32 = ntkit.kernel(mlp, x1, x2, get=get, dtype="float32")
        assert k32.dtype == np.float32 and rel(k32, k12) < 1e-6
        ki = ntkit.kernel(cnn, data["img1"], data["img2"], get=get, threads=THREADS)
        assert ki.shape == (10, 5) and ki.dtype == np.float64
    assert not np.allclose(ntkit.kernel(mlp, x1), ntkit.kernel(mlp, x1, get="nngp"))


# ---------------------------------------------------------------------------------------------
# Feature maps


def constructor_arguments(cls):
    """scikit-learn's contract: get_params() has exactly the constructor's arguments."""
    return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]


def sketches(images):
    return [ntkit.CNTKSketch(64, depth=1, random_state=2)] if images else [
        ntkit.NTKSketch(64, depth=2, random_state=2), ntkit.NTKRF(64, depth=2, random_state=2)]


@pytest.mark.parametrize("images", [False, True])
def test_feature_maps_protocol(data, images):
    x = data["img1"] if images else data["x1"]
    for m in sketches(images):
        f = m.fit_transform(x)
        assert f.shape == (len(x), 64) and f.dtype == np.float32 and f.flags.writeable
        assert m.n_features_in_ == int(np.prod(x.shape[1:])) and m.input_shape_ == x.shape[1:]
        assert np.array_equal(m.fit(x).transform(x), f)
        assert np.array_equal(m.transform(x[3:7]), f[3:7])  # a row's features do not depend on the batch
        assert m.set_params(dtype="float64") is m
        f64 = m.transform(x)
        assert f64.dtype == np.float64 and rel(f64, f) < 1e-6
        params = m.get_params()
        assert list(params) == constructor_arguments(type(m)) and params["n_components"] == 64
        assert params["random_state"] == 2 and params["dtype"] == "float64"
        clone = eval(repr(m), {type(m).__name__: type(m)})  # repr is the constructor call
        assert clone.get_params() == params
        assert np.array_equal(clone.fit_transform(x), f64)
        other = m.set_params(random_state=3, dtype="float32").transform(x)
        assert not np.allclose(other, f)
        with pytest.raises(RuntimeError, match="not fitted"):
            type(m)(64).transform(x)


def test_gradient_features(mlp, data):
    x = data["x1"].astype(np.float64)
    p = mlp.init(0, dtype="float64")
    g = ntkit.GradientFeatures(mlp, 64, random_state=1, threads=THREADS)
    f = g.fit_transform(x, params=p)
    assert f.shape == (12, 64) and f.dtype == np.float32
    # an int seed draws the parameters in the features' float64 arithmetic: init(seed, dtype='float64')
    assert np.array_equal(g.transform(x, params=0), g.transform(x, params=mlp.init(0, dtype="float64")))
    full = ntkit.GradientFeatures(mlp, 64, mode="full").fit(x).transform(x, params=p)
    assert full.shape == (12, 3, 64)
    r = repr(g)
    assert r.startswith("GradientFeatures(net=Network(") and "n_components=64" in r
    assert g.get_params()["net"] is mlp and list(g.get_params()) == constructor_arguments(ntkit.GradientFeatures)
    # F Fᵀ ≈ the pNTK when the projection keeps much more than the P = 163 parameters
    big = ntkit.GradientFeatures(mlp, 4096, dtype="float64").fit_transform(x, params=p)
    k = ntkit.empirical_ntk(mlp, p, x, mode="pntk")
    assert np.linalg.norm(big @ big.T - k) / np.linalg.norm(k) < 0.1


def test_sketches_approximate_their_kernels():
    """NTKSketch / NTKRF: the NTK of [Dense(k, W_std=√2), Relu] x depth, Dense(k); CNTKSketch: the CNTK-GAP."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((20, 8))
    s2 = math.sqrt(2)
    k = ntkit.kernel(ntkit.Network(f"Dense(8, W_std={s2!r}), Relu, Dense(8, W_std={s2!r}), Relu, Dense(1)", (8,)), x)
    for m in (ntkit.NTKSketch(8192, depth=2, dtype="float64"), ntkit.NTKRF(8192, depth=2, dtype="float64")):
        f = m.fit_transform(x)
        assert np.linalg.norm(f @ f.T - k) / np.linalg.norm(k) < 0.25, m
    xi = rng.standard_normal((8, 8, 8, 2))
    kc = ntkit.kernel(ntkit.Network(f"Conv(4, 3, padding=SAME, W_std={s2!r}), Relu, GlobalAvgPool, Dense(1)",
                                    (8, 8, 2)), xi)
    f = ntkit.CNTKSketch(8192, depth=1, dtype="float64").fit_transform(xi)
    assert np.linalg.norm(f @ f.T - kc) / np.linalg.norm(kc) < 0.25


# ---------------------------------------------------------------------------------------------
# Solvers


def test_kernel_ridge_equals_numpy_solve(regression):
    r = regression
    n = len(r["K"])
    for ridge, absolute in ((0.0, False), (0.1, False), (0.05, True)):
        res = ntkit.kernel_ridge(r["K"], r["Y"], r["KT"], r["YT"], ridge=ridge, ridge_absolute=absolute,
                                 threads=THREADS)
        lam = ridge if absolute else ridge * np.trace(r["K"]) / n
        want = r["KT"] @ np.linalg.solve(r["K"] + lam * np.eye(n), r["Y"])
        assert res.predictions.shape == (10, 2) and res.predictions.dtype == np.float64
        assert rel(res.predictions, want) < 1e-8
        want_train = r["K"] @ np.linalg.solve(r["K"] + lam * np.eye(n), r["Y"])
        assert rel(res.train_predictions, want_train) < 1e-8
        assert res.ridge == pytest.approx(ridge) and res.report["lambda"] == pytest.approx(lam, rel=1e-12)
        assert res.test_mse == pytest.approx(np.mean((want - r["YT"]) ** 2), rel=1e-8)
        assert res.test_accuracy is None and "test_accuracy" not in res.metrics[-1]
        assert res.metrics[-1]["time"] == math.inf and res.solver and res.warning == ""
    # no test kernel: no test predictions
    assert ntkit.kernel_ridge(r["K"], r["Y"][:, 0], ridge=0.1).predictions is None


def test_kernel_ridge_labels_auto_and_times(regression):
    r = regression
    n = len(r["K"])
    res = ntkit.kernel_ridge(r["K"], r["L"], r["KT"], r["LT"], ridge=0.01, threads=THREADS)
    onehot = np.eye(3)[r["L"]]
    want = r["KT"] @ np.linalg.solve(r["K"] + 0.01 * np.trace(r["K"]) / n * np.eye(n), onehot)
    assert rel(res.predictions, want) < 1e-8
    assert res.test_accuracy == pytest.approx(np.mean(want.argmax(1) == r["LT"]))
    assert res.report["classes"] == 3 and res.predictions.shape == (10, 3)
    assert ntkit.kernel_ridge(r["K"], r["L"], r["KT"], classes=5).predictions.shape == (10, 5)
    # ridge='auto': chosen on a validation split from the grid, then the fit at that ridge
    auto = ntkit.kernel_ridge(r["K"], r["Y"], r["KT"], ridge="auto", ridge_grid=[1e-3, 1e-1, 10.0], validation=6)
    assert auto.ridge in (1e-3, 1e-1, 10.0)
    sel = auto.report["ridge_selection"]
    assert sel["validation"] == 6 and sel["ridges"] == [1e-3, 1e-1, 10.0]
    assert auto.ridge == sel["ridges"][int(np.argmin(sel["validation_mse"]))]
    assert np.array_equal(auto.predictions, ntkit.kernel_ridge(r["K"], r["Y"], r["KT"], ridge=auto.ridge).predictions)
    # several times: (T, M, O), one metrics dict per time, the gradient-descent dynamics
    times = [0.5, 4.0, math.inf]
    res = ntkit.kernel_ridge(r["K"], r["Y"], r["KT"], r["YT"], t=times, learning_rate=2.0)
    assert res.predictions.shape == (3, 10, 2) and res.train_predictions.shape == (3, n, 2)
    assert [m["time"] for m in res.metrics] == times
    train, test = ntkit.gradient_descent_mse(r["K"], r["Y"], t=times, k_test=r["KT"], learning_rate=2.0)
    assert rel(res.predictions, test) < 1e-8 and rel(res.train_predictions, train) < 1e-8
    assert rel(res.predictions[-1], r["KT"] @ np.linalg.solve(r["K"], r["Y"])) < 1e-6
    assert not np.allclose(res.predictions[0], res.predictions[1])


def gd_oracle(k, kt, y, t, lr, lam=0.0, f0=None, f0t=None):
    """nt.predict.gradient_descent_mse on the regularized kernel Kr = K + λI: f_train(t) = y + exp(-lr t
    Kr / y.size) (f0 - y), f_test(t) = f0_test + KT Kr⁻¹ (f_train(t) - f0); at t = inf f_train = y."""
    f0 = np.zeros_like(y) if f0 is None else f0
    f0t = np.zeros((len(kt), y.shape[1])) if f0t is None else f0t
    kr = k + lam * np.eye(len(k))
    w, v = np.linalg.eigh(kr)
    train = y + v @ np.diag(np.exp(-lr * t * w / y.size)) @ v.T @ (f0 - y)
    return train, f0t + kt @ np.linalg.solve(kr, train - f0)


def test_gradient_descent_mse(regression):
    r = regression
    k, kt, y = r["K"], r["KT"], r["Y"]
    n = len(k)
    # t = inf: the ridge solution with λ = diag_reg · mean(diag K), (N, O) and (M, O) for one time; the
    # train outputs of the regularized dynamics reach y (nt's convention)
    train, test = ntkit.gradient_descent_mse(k, y, k_test=kt, diag_reg=0.1)
    lam = 0.1 * np.trace(k) / n
    assert train.shape == (n, 2) and test.shape == (10, 2)
    assert rel(test, kt @ np.linalg.solve(k + lam * np.eye(n), y)) < 1e-8
    assert rel(train, y) < 1e-12
    _, test_abs = ntkit.gradient_descent_mse(k, y, np.inf, kt, diag_reg=0.1, diag_reg_absolute_scale=True)
    assert rel(test_abs, kt @ np.linalg.solve(k + 0.1 * np.eye(n), y)) < 1e-8
    # finite times, a list: (T, N, O)
    train, test = ntkit.gradient_descent_mse(k, y, [0.3, 5.0], kt, learning_rate=1.5)
    assert train.shape == (2, n, 2) and test.shape == (2, 10, 2)
    for i, t in enumerate([0.3, 5.0]):
        want_train, want_test = gd_oracle(k, kt, y, t, 1.5)
        assert rel(train[i], want_train) < 1e-8 and rel(test[i], want_test) < 1e-6
    train, test = ntkit.gradient_descent_mse(k, y, [0.7], kt, diag_reg=0.1)
    want_train, want_test = gd_oracle(k, kt, y, 0.7, 1.0, lam)
    assert rel(train[0], want_train) < 1e-8 and rel(test[0], want_test) < 1e-8
    # from nonzero initial outputs, a 1-D y, no test kernel
    rng = np.random.default_rng(5)
    f0, f0t = rng.standard_normal((n, 1)), rng.standard_normal((10, 1))
    train, test = ntkit.gradient_descent_mse(k, y[:, 0], 2.0, kt, f0_train=f0, f0_test=f0t)
    want_train, want_test = gd_oracle(k, kt, y[:, :1], 2.0, 1.0, 0.0, f0, f0t)
    assert rel(train, want_train) < 1e-8 and rel(test, want_test) < 1e-6
    train, test = ntkit.gradient_descent_mse(k, y, 1.0)
    assert test is None and train.shape == (n, 2)


def test_gp_inference(regression):
    r = regression
    k, kt, ktt, y = r["K"], r["KT"], r["KTT"], r["Y"]
    n = len(k)
    lam = 0.01 * np.trace(k) / n
    kr = k + lam * np.eye(n)
    mean, cov = ntkit.gp_inference(y, {"train_train": k, "test_train": kt, "test_test": ktt}, diag_reg=0.01)
    assert mean.shape == (10, 2) and cov.shape == (10, 10)
    assert rel(mean, kt @ np.linalg.solve(kr, y)) < 1e-8
    assert rel(cov, ktt - kt @ np.linalg.solve(kr, kt.T)) < 1e-6
    mean, cov = ntkit.gp_inference(y, {"train_train": k, "test_train": kt})
    assert cov is None and rel(mean, kt @ np.linalg.solve(k, y)) < 1e-6
    # get='ntk': the mean from the NTK, the covariance of the trained ensemble needs the NNGP too (nt.predict)
    nngp = {"train_train": 0.5 * k + 0.1 * np.eye(n), "test_train": 0.5 * kt, "test_test": 0.5 * ktt}
    ntk = {"train_train": k, "test_train": kt}
    mean, cov = ntkit.gp_inference(y, nngp, ntk, get="ntk")
    assert rel(mean, kt @ np.linalg.solve(k, y)) < 1e-6
    a = kt @ np.linalg.inv(k)
    want = nngp["test_test"] + a @ nngp["train_train"] @ a.T - a @ nngp["test_train"].T - nngp["test_train"] @ a.T
    assert cov.shape == (10, 10) and rel(cov, want) < 1e-6


def test_feature_ridge_equals_kernel_ridge_on_features(regression):
    rng = np.random.default_rng(9)
    f, ft = rng.standard_normal((30, 12)), rng.standard_normal((10, 12))
    y, yt = regression["Y"], regression["YT"]
    for ridge in (1e-3, 0.3):
        a = ntkit.feature_ridge(f, y, ft, yt, ridge=ridge, threads=THREADS)
        b = ntkit.kernel_ridge(f @ f.T, y, ft @ f.T, yt, ridge=ridge, threads=THREADS)
        assert a.predictions.shape == (10, 2) and rel(a.predictions, b.predictions) < 1e-8
        assert a.test_mse == pytest.approx(b.test_mse, rel=1e-8)
    labels = ntkit.feature_ridge(f, regression["L"], ft, regression["LT"], ridge=0.1)
    assert labels.predictions.shape == (10, 3) and 0 <= labels.test_accuracy <= 1


def test_spectrum_and_compare_against_numpy(regression, tmp_path):
    k = regression["K"]
    w = np.linalg.eigvalsh(k)
    s = ntkit.spectrum(k, y=regression["L"], out=tmp_path / "eig.npy", threads=THREADS)
    assert s["n"] == 30 and s["positive_definite"] is True
    assert s["lambda_max"] == pytest.approx(w[-1], rel=1e-8) and s["lambda_min"] == pytest.approx(w[0], rel=1e-6)
    assert s["trace"] == pytest.approx(np.trace(k), rel=1e-8)
    assert s["frobenius"] == pytest.approx(np.linalg.norm(k), rel=1e-8)
    assert s["condition"] == pytest.approx(w[-1] / w[0], rel=1e-6)
    p = w[w > 0] / w[w > 0].sum()
    assert s["effective_rank"] == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-8)
    yy = np.eye(3)[regression["L"]] @ np.eye(3)[regression["L"]].T
    assert s["alignment"] == pytest.approx(np.sum(k * yy) / (np.linalg.norm(k) * np.linalg.norm(yy)), rel=1e-8)
    assert rel(np.load(tmp_path / "eig.npy"), w) < 1e-10
    top = ntkit.spectrum(save(tmp_path, K=k)["K"], top=3, out=tmp_path / "top.npy")  # Lanczos on the file
    assert top["lambda_max"] == pytest.approx(w[-1], rel=1e-8)
    assert rel(np.load(tmp_path / "top.npy"), w[-3:]) < 1e-8
    # compare: relative Frobenius distance, and a pNTK (N, N) against a full eNTK (N, N, O, O) as pNTK ⊗ I
    b = k + 0.01 * np.random.default_rng(2).standard_normal(k.shape)
    c = ntkit.compare(k, b, threads=THREADS)
    assert c["relative_frobenius"] == pytest.approx(np.linalg.norm(k - b) / np.linalg.norm(b), rel=1e-8)
    assert c["lambda_max_a"] == pytest.approx(w[-1], rel=1e-8) and c["kronecker"] is False
    assert "lambda_max_a" not in ntkit.compare(k, b, spectra=False)
    net = ntkit.Network(MLP, MLP_SHAPE)
    x = np.random.default_rng(4).standard_normal((9, 6))
    full = ntkit.empirical_ntk(net, 0, x, mode="full")
    pntk = ntkit.empirical_ntk(net, 0, x, mode="pntk")
    c = ntkit.compare(pntk, full)
    kron = np.einsum("ij,ab->ijab", pntk, np.eye(3))
    assert c["kronecker"] is True and c["outputs"] == 3
    assert c["relative_frobenius"] == pytest.approx(np.linalg.norm(kron - full) / np.linalg.norm(full), rel=1e-8)


def test_pntk_report(mlp, data):
    x, xt = data["x1"], data["x2"]
    y, yt = np.arange(12) % 3, np.arange(7) % 3
    r = ntkit.pntk_report(mlp, 0, x, y, xt, yt, threads=THREADS)
    assert r["n_train"] == 12 and r["n_test"] == 7 and r["outputs"] == 3 and r["num_params"] == mlp.num_params
    assert r["full_train"]["shape"] == [12, 12, 3, 3] and r["pntk_test"]["shape"] == [7, 12]
    full = ntkit.empirical_ntk(mlp, 0, x, mode="full", threads=THREADS)
    pntk = ntkit.empirical_ntk(mlp, 0, x, mode="pntk", threads=THREADS)
    assert r["train"]["relative_frobenius"] == pytest.approx(ntkit.compare(pntk, full)["relative_frobenius"], rel=1e-6)
    assert 0 <= r["accuracy_pntk"] <= 1 and 0 <= r["accuracy_full"] <= 1


# ---------------------------------------------------------------------------------------------
# 2. Bit-for-bit agreement with the command line


@pytest.mark.parametrize("case", ["mlp", "mlp-standard-float64", "cnn"])
def test_cli_init_and_apply(tmp_path, data, case):
    spec, shape, flags, kw, dtype, x = {
        "mlp": (MLP, MLP_SHAPE, ["--b-std", "0.1"], dict(b_std=0.1), "float32", data["x1"]),
        "mlp-standard-float64": (MLP, MLP_SHAPE, ["--W-std", "1.5", "--b-std", "0.2", "--parameterization", "standard"],
                                 dict(W_std=1.5, b_std=0.2, parameterization="standard"), "float64",
                                 data["x1"].astype(np.float64)),
        "cnn": (CNN, CNN_SHAPE, [], {}, "float32", data["img1"])}[case]
    net = ntkit.Network(spec, shape, **kw)
    cli("init", "--net", spec, *flags, "--input-shape", ",".join(map(str, shape)), "--seed", 7, "--dtype", dtype,
        "-o", tmp_path / "p.npz", "-q")
    with np.load(tmp_path / "p.npz") as f:
        want = {k: f[k] for k in f.files}
    got = net.init(7, dtype=dtype, threads=THREADS)
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
    paths = save(tmp_path, x=x)
    cli("apply", "--net", spec, *flags, "--params", tmp_path / "p.npz", "-x", paths["x"], "-o", tmp_path / "y.npy",
        "--threads", THREADS, "-q")
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == x.dtype
    assert np.array_equal(net.apply(got, x, threads=THREADS), y)
    assert np.array_equal(net.apply(tmp_path / "p.npz", paths["x"], threads=THREADS), y)  # paths, read by the job


ENTK_CASES = [("full", "jc", False, False), ("full", "sd", True, False), ("pntk", "vp", True, False),
              ("trace", "sd", True, False), ("trace-sum", "auto", False, False), ("logit=1", "vp", False, False),
              ("diagonal", "jc", True, False), ("trace", "auto", True, True), ("full", "jc", False, True)]


@pytest.mark.parametrize("mode,method,with_x2,nngp", ENTK_CASES)
def test_cli_entk(tmp_path, mlp, data, mode, method, with_x2, nngp):
    paths = save(tmp_path, x1=data["x1"], x2=data["x2"])
    args = ["entk", "--net", MLP, "--b-std", MLP_B, "--seed", 3, "--x1", paths["x1"], "--mode", mode,
            "--method", method, "--threads", THREADS, "-o", tmp_path / "k.npy", "-q"]
    if with_x2:
        args += ["--x2", paths["x2"]]
    if nngp:
        args += ["--get", "nngp"]
    cli(*args)
    want = np.load(tmp_path / "k.npy")
    got = ntkit.empirical_ntk(mlp, 3, data["x1"], data["x2"] if with_x2 else None, mode=mode, method=method,
                              nngp=nngp, threads=THREADS)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def test_cli_entk_float64_params_file_and_explain(tmp_path, mlp, data):
    x1 = data["x1"].astype(np.float64)
    p = mlp.init(2, dtype="float64")
    np.savez(tmp_path / "p.npz", **p)
    paths = save(tmp_path, x1=x1)
    cli("entk", "--net", MLP, "--b-std", MLP_B, "--params", tmp_path / "p.npz", "--x1", paths["x1"], "--mode", "pntk",
        "--threads", THREADS, "-o", tmp_path / "k.npy", "-q")
    want = np.load(tmp_path / "k.npy")
    assert want.dtype == np.float64
    assert np.array_equal(ntkit.empirical_ntk(mlp, p, x1, mode="pntk", threads=THREADS), want)
    explain = cli("entk", "--net", MLP, "--b-std", MLP_B, "--seed", 0, "--x1", paths["x1"], "--mode", "pntk",
                  "--max-memory", "100M", "--threads", THREADS, "--explain")
    assert ntkit.plan_empirical_ntk(mlp, x1, mode="pntk", max_memory="100M", threads=THREADS) == explain


@pytest.mark.parametrize("get", ["ntk", "nngp"])
@pytest.mark.parametrize("images", [False, True])
def test_cli_kernel(tmp_path, mlp, cnn, data, get, images):
    net, spec, flags = (cnn, CNN, []) if images else (mlp, MLP, ["--b-std", MLP_B])
    x1, x2 = (data["img1"], data["img2"]) if images else (data["x1"], data["x2"])
    paths = save(tmp_path, x1=x1, x2=x2)
    cli("kernel", "--net", spec, *flags, "--x1", paths["x1"], "--x2", paths["x2"], "--get", get, "--threads", THREADS,
        "-o", tmp_path / "k.npy", "-q")
    want = np.load(tmp_path / "k.npy")
    assert np.array_equal(ntkit.kernel(net, x1, x2, get=get, threads=THREADS), want)
    cli("kernel", "--net", spec, *flags, "--x1", paths["x1"], "--get", get, "--dtype", "float32", "--threads", THREADS,
        "-o", tmp_path / "k32.npy", "-q")
    want = np.load(tmp_path / "k32.npy")
    assert want.dtype == np.float32
    assert np.array_equal(ntkit.kernel(net, x1, get=get, dtype="float32", threads=THREADS), want)


FMNIST = Path("/usr/share/datasets/fashion-mnist")


def test_load_reads_files_as_the_jobs_do(tmp_path):
    """IDX images: NHWC, bytes / 255 in float32 (a NumPy decode of the file); IDX labels: integers;
    .npy as stored, a uint8 .npy never rescaled (the CLI reads it so)."""
    import gzip
    raw = gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz").read()
    pixels = np.frombuffer(raw, np.uint8, offset=16).reshape(10000, 28, 28, 1)
    x = ntkit.load(FMNIST / "t10k-images-idx3-ubyte.gz")
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32
    assert np.array_equal(x, pixels.astype(np.float32) / np.float32(255))
    assert np.array_equal(ntkit.load(FMNIST / "t10k-images-idx3-ubyte.gz", idx_scale="raw"), pixels)
    labels = ntkit.load(FMNIST / "t10k-labels-idx1-ubyte.gz")
    raw = gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz").read()
    assert labels.dtype == np.uint8 and np.array_equal(labels, np.frombuffer(raw, np.uint8, offset=8))
    u8 = np.full((3, 4), 255, np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    assert np.array_equal(ntkit.load(tmp_path / "u8.npy"), u8)
    with pytest.raises(OSError):
        ntkit.load(tmp_path / "missing.npy")


@pytest.mark.parametrize("sketch", ["ntk", "ntkrf", "cntk", "gradient"])
def test_cli_features(tmp_path, mlp, data, sketch):
    if sketch == "cntk":
        x, flags = data["img1"], ["--depth", 2, "--filter", 3, "--padding", "VALID"]
        m = ntkit.CNTKSketch(64, depth=2, filter=3, padding="VALID", random_state=5, threads=THREADS)
    elif sketch == "ntk":
        x, flags = data["x1"], ["--depth", 2, "--degree", 4]
        m = ntkit.NTKSketch(64, depth=2, degree=4, random_state=5, threads=THREADS)
    elif sketch == "ntkrf":
        x, flags = data["x1"], ["--depth", 2, "--relu-dim", 16, "--plain-sampling", "--transform", "fourier"]
        m = ntkit.NTKRF(64, depth=2, relu_dim=16, leverage=False, srht_transform="fourier", random_state=5,
                        threads=THREADS)
    else:
        x, flags = data["x1"], ["--net", MLP, "--b-std", MLP_B, "--init-seed", 4, "--projection", "countsketch"]
        m = ntkit.GradientFeatures(mlp, 64, projection="countsketch", random_state=5, threads=THREADS)
    paths = save(tmp_path, x=x)
    cli("features", "--sketch", sketch, "--dim", 64, "--seed", 5, *flags, "-x", paths["x"], "--threads", THREADS,
        "-o", tmp_path / "f.npy", "-q")
    want = np.load(tmp_path / "f.npy")
    got = m.fit_transform(x, params=4) if sketch == "gradient" else m.fit_transform(x)
    assert got.dtype == want.dtype == np.float32
    assert np.array_equal(got, want)


REGRESS_CASES = {
    "float-times": (["--y-train", "Y", "--y-test", "YT", "--ridge", 0.1, "--time", "1,inf"],
                    dict(y_train="Y", y_test="YT", ridge=0.1, t=[1, math.inf])),
    "labels-auto": (["--y-train", "L", "--y-test", "LT", "--ridge", "auto"],
                    dict(y_train="L", y_test="LT", ridge="auto")),
    "absolute-classes": (["--y-train", "L", "--ridge", 0.05, "--ridge-absolute", "--classes", 4, "--time", 2.5],
                         dict(y_train="L", ridge=0.05, ridge_absolute=True, classes=4, t=2.5)),
}


@pytest.mark.parametrize("case", list(REGRESS_CASES))
def test_cli_regress(tmp_path, regression, case):
    paths = save(tmp_path, **regression)
    args, kw = REGRESS_CASES[case]
    args = [paths[a] if isinstance(a, str) and a in paths else a for a in args]
    out = cli("regress", "--k-train", paths["K"], "--k-test", paths["KT"], *args, "--json", "--threads", THREADS,
              "-o", tmp_path / "pred.npy", "--train-predictions", tmp_path / "train.npy")
    want = json.loads(out)
    kw = {k: regression[v] if k.startswith("y_") else v for k, v in kw.items()}
    res = ntkit.kernel_ridge(regression["K"], k_test=regression["KT"], threads=THREADS, **kw)
    assert np.array_equal(res.predictions, np.load(tmp_path / "pred.npy"))
    assert np.array_equal(res.train_predictions, np.load(tmp_path / "train.npy"))
    paths_keys = ("predictions", "train_predictions", "covariance")
    assert without(res.report, *paths_keys) == without(want, *paths_keys)
    assert len(res.metrics) == len(want["results"])
    # the same from .npy paths (memory-mapped by the job)
    res2 = ntkit.kernel_ridge(paths["K"], k_test=paths["KT"], threads=THREADS, **kw)
    assert np.array_equal(res2.predictions, res.predictions)


def test_cli_spectrum_compare_pntk_report(tmp_path, mlp, data, regression):
    paths = save(tmp_path, K=regression["K"], L=regression["L"], x1=data["x1"], x2=data["x2"],
                 y1=np.arange(12) % 3, y2=np.arange(7) % 3)
    want = json.loads(cli("spectrum", "--k", paths["K"], "--y", paths["L"], "--json", "--threads", THREADS,
                          "-o", tmp_path / "eig.npy"))
    eig = np.load(tmp_path / "eig.npy")
    assert ntkit.spectrum(regression["K"], y=regression["L"], threads=THREADS, out=tmp_path / "eig.npy") == want
    assert np.array_equal(np.load(tmp_path / "eig.npy"), eig)
    want = json.loads(cli("spectrum", "--k", paths["K"], "--top", 4, "--json", "--threads", THREADS))
    assert ntkit.spectrum(paths["K"], top=4, threads=THREADS) == want
    # compare: a pNTK against the full eNTK (Kronecker), both computed by the CLI
    for mode in ("pntk", "full"):
        cli("entk", "--net", MLP, "--b-std", MLP_B, "--seed", 1, "--x1", paths["x1"], "--mode", mode,
            "--threads", THREADS, "-o", tmp_path / f"{mode}.npy", "-q")
    want = json.loads(cli("compare", "--k", tmp_path / "pntk.npy", "--ref", tmp_path / "full.npy", "--json",
                          "--threads", THREADS))
    got = ntkit.compare(np.load(tmp_path / "pntk.npy"), np.load(tmp_path / "full.npy"), threads=THREADS)
    assert got == want and got["kronecker"] is True
    want = json.loads(cli("pntk-report", "--net", MLP, "--b-std", MLP_B, "--seed", 2, "--x-train", paths["x1"],
                          "--y-train", paths["y1"], "--x-test", paths["x2"], "--y-test", paths["y2"], "--method", "jc",
                          "--json", "--threads", THREADS))
    got = ntkit.pntk_report(mlp, 2, data["x1"], np.arange(12) % 3, data["x2"], np.arange(7) % 3, method="jc",
                            threads=THREADS)
    timings = ("seconds", "measured_peak_bytes")
    assert without(got, *timings) == without(want, *timings)


def test_cli_integer_inputs(tmp_path, mlp, data):
    """An integer array is read as the CLI reads an integer .npy: converted to float32 by default."""
    xi = (data["x1"] * 10).astype(np.int16)
    paths = save(tmp_path, xi=xi)
    cli("apply", "--net", MLP, "--b-std", MLP_B, "--params", save_params(tmp_path, mlp), "-x", paths["xi"],
        "-o", tmp_path / "y.npy", "--threads", THREADS, "-q")
    want = np.load(tmp_path / "y.npy")
    got = mlp.apply(tmp_path / "p.npz", xi, threads=THREADS)
    assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want)
    cli("entk", "--net", MLP, "--b-std", MLP_B, "--seed", 0, "--x1", paths["xi"], "--mode", "pntk",
        "--threads", THREADS, "-o", tmp_path / "k.npy", "-q")
    got = ntkit.empirical_ntk(mlp, 0, xi, mode="pntk", threads=THREADS)
    assert got.dtype == np.float32 and np.array_equal(got, np.load(tmp_path / "k.npy"))


# ---------------------------------------------------------------------------------------------
# 3. Independent oracles


def jacobian_fd(net, params, x, eps=1e-6):
    """J (N, O, P) of net.apply with respect to the stored parameters, by central differences (float64)."""
    cols = []
    for key in sorted(params):
        flat = params[key].reshape(-1)
        for i in range(flat.size):
            up = {k: v.copy() for k, v in params.items()}
            dn = {k: v.copy() for k, v in params.items()}
            up[key].reshape(-1)[i] += eps
            dn[key].reshape(-1)[i] -= eps
            cols.append((net.apply(up, x) - net.apply(dn, x)) / (2 * eps))
    return np.stack(cols, axis=-1)


def test_entk_full_equals_finite_difference_jacobian():
    net = ntkit.Network("Dense(8, b_std=0.5), Tanh, Dense(3, b_std=0.5)", (4,))
    p = net.init(1, dtype="float64")
    rng = np.random.default_rng(8)
    x1, x2 = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    j1, j2 = jacobian_fd(net, p, x1), jacobian_fd(net, p, x2)
    assert j1.shape == (5, 3, net.num_params)
    for x, j in ((None, j1), (x2, j2)):
        want = np.einsum("iap,jbp->ijab", j1, j)
        for method in ("jc", "vp", "sd"):
            got = ntkit.empirical_ntk(net, p, x1, x, mode="full", method=method)
            assert rel(got, want) < 1e-7, method


def test_one_dense_layer_kernel_is_exact():
    """f = x W / √d + b_std b (NTK parameterization): Θ(x, x') = (x·x'/d + b_std²) I_O."""
    net = ntkit.Network("Dense(3, b_std=0.7)", (5,))
    x = np.random.default_rng(1).standard_normal((6, 5))
    want = np.einsum("ij,ab->ijab", x @ x.T / 5 + 0.49, np.eye(3))
    for method in ("jc", "vp", "sd"):
        assert rel(ntkit.empirical_ntk(net, 4, x, mode="full", method=method), want) < 1e-12
    assert rel(ntkit.kernel(net, x), x @ x.T / 5 + 0.49) < 1e-12
    assert rel(ntkit.kernel(net, x, get="nngp"), x @ x.T / 5 + 0.49) < 1e-12


@pytest.mark.parametrize("nngp", [False, True])
def test_modes_are_reductions_of_full(mlp, data, nngp):
    x1, x2 = data["x1"].astype(np.float64), data["x2"].astype(np.float64)
    p = mlp.init(6, dtype="float64")
    full = ntkit.empirical_ntk(mlp, p, x1, x2, mode="full", nngp=nngp)
    o = 3
    want = {"trace": np.einsum("ijaa->ij", full) / o, "trace-sum": np.einsum("ijaa->ij", full),
            "pntk": full.sum(axis=(2, 3)) / o, "logit=1": full[:, :, 1, 1],
            "diagonal": np.einsum("ijaa->ija", full)}
    for mode, w in want.items():
        assert rel(ntkit.empirical_ntk(mlp, p, x1, x2, mode=mode, nngp=nngp), w) < 1e-12, mode
    if nngp:  # the empirical NNGP: f(x1)_a f(x2)_b
        f1, f2 = mlp.apply(p, x1), mlp.apply(p, x2)
        assert rel(full, np.einsum("ia,jb->ijab", f1, f2)) < 1e-12
    else:
        sym = ntkit.empirical_ntk(mlp, p, x1, mode="full")
        assert rel(sym, sym.transpose(1, 0, 3, 2)) < 1e-14  # Θ(x, x')_ab = Θ(x', x)_ba
        assert np.linalg.eigvalsh(sym.transpose(0, 2, 1, 3).reshape(36, 36)).min() > -1e-10


def test_infinite_width_relu_kernel_matches_arccosine_formulas():
    """Dense(k, W_std=σw, b_std=σb), Relu, Dense(1, same): K1 = σw² x·x'/d + σb²; after the ReLU
    K2 = σw² (√(K11 K22) sin θ + (π - θ) K12) / 2π + σb²; Θ = K2 + σw² K1 (π - θ) / 2π."""
    sw, sb, d = 1.5, 0.2, 5
    net = ntkit.Network(f"Dense(32, W_std={sw}, b_std={sb}), Relu, Dense(1, W_std={sw}, b_std={sb})", (d,))
    rng = np.random.default_rng(12)
    x1, x2 = rng.standard_normal((7, d)), rng.standard_normal((4, d))
    k12 = sw ** 2 * x1 @ x2.T / d + sb ** 2
    k11 = sw ** 2 * np.sum(x1 * x1, 1) / d + sb ** 2
    k22 = sw ** 2 * np.sum(x2 * x2, 1) / d + sb ** 2
    norms = np.sqrt(np.outer(k11, k22))
    theta = np.arccos(np.clip(k12 / norms, -1, 1))
    nngp = sw ** 2 * (norms * np.sin(theta) + (np.pi - theta) * k12) / (2 * np.pi) + sb ** 2
    ntk = nngp + sw ** 2 * k12 * (np.pi - theta) / (2 * np.pi)
    assert rel(ntkit.kernel(net, x1, x2, get="nngp"), nngp) < 1e-10
    assert rel(ntkit.kernel(net, x1, x2, get="ntk"), ntk) < 1e-10


# ---------------------------------------------------------------------------------------------
# 4. Errors


@pytest.mark.parametrize("spec", ["Dense(16), Rleu", "Dense(16", "Dense(x)", "Dense(4, foo=1)", "",
                                  "Conv(4, 3), Dense(1)", "Residual(Dense(4))"])
def test_bad_spec_is_value_error_with_the_cli_message(tmp_path, spec):
    paths = save(tmp_path, x=np.ones((2, 6), np.float32))
    with pytest.raises(ValueError) as e:
        ntkit.empirical_ntk(ntkit.Network(spec, (6,)), 0, paths["x"])
    message = str(e.value)
    assert len(message) > 20
    cli_message = cli_error("entk", "--net", spec, "--seed", 0, "--x1", paths["x"], "-o", tmp_path / "k.npy")
    assert cli_message.endswith(message), (cli_message, message)  # the CLI prefixes '--net: ' or the input file
    assert not (tmp_path / "k.npy").exists()


def test_input_errors(tmp_path, mlp, data):
    x = data["x1"]
    for bad in (np.ones((3, 5), np.float32), np.ones((3, 6, 1), np.float32), np.ones(6, np.float32)):
        with pytest.raises(ValueError, match="shape"):
            mlp.apply(0, bad)
        with pytest.raises(ValueError, match="shape"):
            ntkit.empirical_ntk(mlp, 0, x, bad)
        with pytest.raises(ValueError, match="shape"):
            ntkit.kernel(mlp, bad)
    with pytest.raises(ValueError, match="no examples"):
        ntkit.empirical_ntk(mlp, 0, x[:0])
    for value in (np.nan, np.inf):
        bad = x.copy()
        bad[4, 2] = value
        paths = save(tmp_path, bad=bad)
        with pytest.raises(ValueError, match="non-finite") as e:
            ntkit.empirical_ntk(mlp, 0, x, bad)
        assert "example 4" in str(e.value)
        cli_message = cli_error("entk", "--net", MLP, "--seed", 0, "--x1", paths["bad"], "-o", tmp_path / "k.npy")
        with pytest.raises(ValueError) as e:
            ntkit.empirical_ntk(mlp, 0, paths["bad"])
        assert "--" + str(e.value) == cli_message  # the CLI names the flag, Python the argument
        with pytest.raises(ValueError, match="non-finite"):
            ntkit.kernel(mlp, bad)
        with pytest.raises(ValueError, match="row 4 has a NaN"):
            ntkit.NTKSketch(64).fit_transform(bad)
    # parameters that do not fit the network
    p = mlp.init(0)
    with pytest.raises(ValueError, match="no array '0.W'"):
        mlp.apply({k: v for k, v in p.items() if k != "0.W"}, x)
    with pytest.raises(ValueError, match="has shape"):
        mlp.apply({**p, "0.W": p["0.W"][:2]}, x)
    with pytest.raises(ValueError, match="float array"):
        mlp.apply({**p, "0.W": p["0.W"].astype(np.int32)}, x)
    with pytest.raises(ValueError, match="complex"):
        mlp.apply(0, x.astype(np.complex64))
    with pytest.raises(ValueError, match="square"):
        ntkit.spectrum(np.ones((3, 4)))
    with pytest.raises(ValueError, match="targets"):
        ntkit.kernel_ridge(np.eye(3), np.ones(4))
    with pytest.raises(ValueError, match="different numbers of examples"):
        ntkit.compare(np.eye(3), np.eye(4))


def test_missing_files_are_os_errors(tmp_path, mlp, data):
    missing = tmp_path / "missing.npy"
    with pytest.raises(OSError, match="missing.npy"):
        ntkit.empirical_ntk(mlp, 0, missing)
    with pytest.raises(OSError, match="missing.npz"):
        mlp.apply(tmp_path / "missing.npz", data["x1"])
    with pytest.raises(OSError):
        ntkit.kernel(mlp, str(missing))
    with pytest.raises(OSError):
        ntkit.kernel_ridge(missing, np.ones(3))
    with pytest.raises(OSError):
        ntkit.NTKSketch(64).fit(missing).transform(missing)
    with pytest.raises(OSError, match="does not exist"):
        ntkit.empirical_ntk(mlp, 0, data["x1"], out=tmp_path / "no" / "dir" / "k.npy")


def test_memory_budget(tmp_path):
    """A kernel that does not fit max_memory: MemoryError in memory; written out of core with out=."""
    net = ntkit.Network("Dense(8), Relu, Dense(2)", (5,))
    x = np.random.default_rng(0).standard_normal((1500, 5)).astype(np.float32)  # trace kernel 8.6 MiB
    with pytest.raises(MemoryError, match="max-memory"):
        ntkit.empirical_ntk(net, 0, x, max_memory="70M", threads=THREADS)
    with pytest.raises(MemoryError):
        ntkit.empirical_ntk(net, 0, x[:10], max_memory=1024)
    k = ntkit.empirical_ntk(net, 0, x, max_memory="70M", out=tmp_path / "k.npy", threads=THREADS)
    assert isinstance(k, np.memmap) and k.shape == (1500, 1500)
    assert "out of core" in ntkit.plan_empirical_ntk(net, x, max_memory="70M", out=tmp_path / "k2.npy")
    assert np.array_equal(k, ntkit.empirical_ntk(net, 0, x, threads=THREADS))


def test_not_implemented(tmp_path, mlp):
    x = np.random.default_rng(0).standard_normal((4, 6))
    paths = save(tmp_path, x=x)
    for spec, shape in (("Dense(8), Relu, Relu, Dense(1)", (6,)), ("Conv(2, 3), Relu", (6, 6, 1))):
        xs = paths["x"] if shape == (6,) else np.ones((2,) + shape)
        with pytest.raises(NotImplementedError) as e:
            ntkit.kernel(ntkit.Network(spec, shape), xs)
        assert "infinite-width" in str(e.value)
        if shape == (6,):
            assert cli_error("kernel", "--net", spec, "--x1", paths["x"], "-o", tmp_path / "k.npy") == str(e.value)
    with pytest.raises(NotImplementedError, match="path"):
        ntkit.spectrum(x @ x.T, top=2)  # Lanczos reads a kernel file


def test_bad_keyword_values(mlp, data):
    x = data["x1"]
    bad_calls = {
        "mode": lambda: ntkit.empirical_ntk(mlp, 0, x, mode="bogus"),
        "logit": lambda: ntkit.empirical_ntk(mlp, 0, x, mode="logit=3"),
        "method": lambda: ntkit.empirical_ntk(mlp, 0, x, method="x"),
        "dtype": lambda: ntkit.empirical_ntk(mlp, 0, x, dtype="int8"),
        "apply dtype": lambda: mlp.apply(0, x, dtype="float16"),
        "init dtype": lambda: mlp.init(0, dtype="int8"),
        "kernel dtype": lambda: ntkit.kernel(mlp, x, dtype="int8"),
        "get": lambda: ntkit.kernel(mlp, x, get="x"),
        "seed": lambda: mlp.init(seed=-1),
        "params": lambda: mlp.apply(True, x),
        "net": lambda: ntkit.empirical_ntk("Dense(3)", 0, x),
        "parameterization": lambda: ntkit.Network("Dense(3)", (6,), parameterization="x"),
        "spec type": lambda: ntkit.Network(3, (6,)),
        "max_memory": lambda: ntkit.empirical_ntk(mlp, 0, x, max_memory="lots"),
        "negative max_memory": lambda: ntkit.empirical_ntk(mlp, 0, x, max_memory=-5),
        "out_of_core without out": lambda: ntkit.empirical_ntk(mlp, 0, x, out_of_core=True),
        "kernel out_of_core without out": lambda: ntkit.kernel(mlp, x, out_of_core=True),
        "progress": lambda: ntkit.empirical_ntk(mlp, 0, x, progress=3),
        "ridge": lambda: ntkit.kernel_ridge(np.eye(3), np.ones(3), ridge="bogus"),
        "negative ridge": lambda: ntkit.kernel_ridge(np.eye(3), np.ones(3), ridge=-1),
        "time": lambda: ntkit.gradient_descent_mse(np.eye(3), np.ones(3), t=-1),
        "no time": lambda: ntkit.gradient_descent_mse(np.eye(3), np.ones(3), t=[]),
        "gp get": lambda: ntkit.gp_inference(np.ones(3), {"train_train": np.eye(3)}, get="x"),
        "gp keys": lambda: ntkit.gp_inference(np.ones(3), {"train_train": np.eye(3), "bogus": np.eye(3)}),
        "sketch dtype": lambda: ntkit.NTKSketch(64, dtype="int8").fit(x),
        "odd dim": lambda: ntkit.NTKSketch(63).fit_transform(x),
        "degree": lambda: ntkit.NTKSketch(64, degree=3).fit_transform(x),
        "random_state": lambda: ntkit.NTKRF(64, random_state=-1).fit(x),
        "transform": lambda: ntkit.NTKSketch(64, srht_transform="x").fit(x),
        "padding": lambda: ntkit.CNTKSketch(64, padding="x").fit(data["img1"]),
        "projection": lambda: ntkit.GradientFeatures(mlp, 64, projection="x").fit(x),
        "gradient mode": lambda: ntkit.GradientFeatures(mlp, 64, mode="bogus").fit_transform(x, params=0),
        "set_params": lambda: ntkit.NTKSketch(64).set_params(bogus=1),
        "fitted shape": lambda: ntkit.NTKSketch(64).fit(x).transform(x[:, :5]),
        "images to a vector sketch": lambda: ntkit.NTKSketch(64).fit_transform(data["img1"]),
    }
    for name, call in bad_calls.items():
        with pytest.raises(ValueError):
            call()
            pytest.fail(f"{name}: no ValueError")
    # the spec of mode / method / dtype errors names the value
    with pytest.raises(ValueError, match="'bogus'"):
        ntkit.empirical_ntk(mlp, 0, x, mode="bogus")
    with pytest.raises(ValueError, match="'x'"):
        ntkit.empirical_ntk(mlp, 0, x, method="x")
    with pytest.raises(ValueError, match="'int8'"):
        ntkit.empirical_ntk(mlp, 0, x, dtype="int8")


# ---------------------------------------------------------------------------------------------
# 5. Out of core


def test_out_of_core_results_are_memmaps(tmp_path, mlp, cnn, data):
    x1, x2 = data["x1"], data["x2"]
    for mode in ("full", "pntk"):
        want = ntkit.empirical_ntk(mlp, 1, x1, x2, mode=mode, threads=THREADS)
        path = tmp_path / f"entk-{mode}.npy"
        k = ntkit.empirical_ntk(mlp, 1, x1, x2, mode=mode, out=path, out_of_core=True, threads=THREADS)
        assert isinstance(k, np.memmap) and not k.flags.writeable and Path(k.filename) == path.resolve()
        assert k.dtype == want.dtype and np.array_equal(k, want) and np.array_equal(np.load(path), want)
        # out= without out_of_core: written there too
        k2 = ntkit.empirical_ntk(mlp, 1, x1, x2, mode=mode, out=tmp_path / "again.npy", threads=THREADS)
        assert np.array_equal(k2, want) and np.array_equal(np.load(tmp_path / "again.npy"), want)
    want = ntkit.kernel(cnn, data["img1"], threads=THREADS)
    k = ntkit.kernel(cnn, data["img1"], out=tmp_path / "kernel.npy", out_of_core=True, threads=THREADS)
    assert isinstance(k, np.memmap) and np.array_equal(k, want)
    f = ntkit.NTKSketch(64).fit(x1)
    fm = f.transform(x1, out=tmp_path / "f.npy")
    assert isinstance(fm, np.memmap) and np.array_equal(fm, f.transform(x1))
    r = ntkit.kernel_ridge(tmp_path / "kernel.npy", np.arange(10) % 2, k, ridge=0.1, out=tmp_path / "pred.npy")
    assert np.array_equal(r.predictions, np.load(tmp_path / "pred.npy"))
    assert r.report["predictions"] == str(tmp_path / "pred.npy")


# ---------------------------------------------------------------------------------------------
# 6. Inputs read in place, outputs of their own


# The scripts' peak memory is VmHWM, which starts afresh at exec. Not getrusage's ru_maxrss: Linux
# keeps that across execve, so a child of a large pytest process starts at its parent's peak and a
# growth smaller than that gap reads as 0 (which is how these checks once measured 0 MB in CI).
PEAK_READER = '''
from ntkit.demo.procstat import peak_rss_bytes
def peak_kib():
    return peak_rss_bytes() / 1024
'''

PEAK_SCRIPT = PEAK_READER + textwrap.dedent("""
    import sys
    import numpy as np
    import ntkit
    dtype, compute = sys.argv[1], sys.argv[2]
    x = np.ones((100000, 1000), dtype=dtype)  # touched: in the peak already
    net = ntkit.Network("Dense(1)", (1000,))
    p = net.init(0)
    before = peak_kib()
    y = net.apply(p, x, dtype=None if compute == "default" else compute, threads=2)
    after = peak_kib()
    assert y.shape == (100000, 1), y.shape
    print((after - before) / 1024)  # MiB
""")


def peak_growth_mib(dtype: str, compute: str) -> float:
    r = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, dtype, compute], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM is Linux's")
def test_inputs_are_read_in_place():
    """400 MB of float32 inputs: the peak grows by less than 100 MB; float64 inputs computed in
    float32 must be converted (about 400 MB), which shows the measurement can fail."""
    assert peak_growth_mib("float32", "default") < 100
    assert peak_growth_mib("float64", "default") < 100
    assert peak_growth_mib("float64", "float32") > 200


PARAMS_PEAK_SCRIPT = PEAK_READER + textwrap.dedent("""
    import sys
    import numpy as np
    import ntkit
    net = ntkit.Network("Dense(4096), Relu, Dense(4096), Relu, Dense(4096)", (4096,))
    if sys.argv[1] == "copies":
        # Separate arrays of the same shapes. Not made from init(), whose float64 draw (freed, kept
        # by the allocator for reuse) would hold the gather's memory below the peak already seen;
        # made last layer first, so that they cannot happen to lie in place as the flat vector
        # (consecutive heap blocks, which the jobs would rightly borrow).
        q = {k: np.full(v, 0.01, np.float32) for k, v in reversed(net.param_shapes.items())}
    else:
        q = net.init(0)  # 50M float32 parameters, 200 MB, named slices of one buffer
    x = np.ones((1, 4096), np.float32)
    before = peak_kib()
    y = net.apply(q, x, threads=2)
    after = peak_kib()
    print((after - before) / 1024)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM is Linux's")
def test_parameters_from_init_are_read_in_place():
    """200 MB of parameters from init(): the peak grows by less than 50 MB (gathering them would
    add 200 MB). Which arrays are borrowed and which copied is checked exactly, by address, in
    tests/cpp/test_array.cpp (ArrayBorrow.ParametersInPlaceAreBorrowedOthersCopied); a peak-memory
    control with separate arrays proved unreliable across machines (0-194 MB: consecutive heap
    blocks can lie in place and are then rightly borrowed)."""
    env = dict(os.environ, NTKIT_KEEP_FREED_MEMORY="0")
    r = subprocess.run([sys.executable, "-c", PARAMS_PEAK_SCRIPT, "init"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip().splitlines()[-1]) < 50


RSS_AFTER_FREE_SCRIPT = textwrap.dedent("""
    import os
    import numpy as np
    import ntkit
    a = np.ones(50_000_000, np.float32)  # 200 MB, touched
    del a
    pages = int(open("/proc/self/statm").read().split()[1])
    print(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)  # resident MiB after the free
""")


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt and /proc")
@pytest.mark.parametrize("setting, keeps", [("1", True), ("0", False)])
def test_keep_freed_memory_is_what_import_sets(setting, keeps):
    """Import keeps freed blocks for reuse (the 200 MB stay resident); NTKIT_KEEP_FREED_MEMORY=0
    leaves glibc's defaults (they go back to the OS)."""
    env = dict(os.environ, NTKIT_KEEP_FREED_MEMORY=setting)
    r = subprocess.run([sys.executable, "-c", RSS_AFTER_FREE_SCRIPT], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    resident = float(r.stdout.strip().splitlines()[-1])
    assert (resident > 180) == keeps, resident
    ntkit.keep_freed_memory(False)
    ntkit.keep_freed_memory(True)


def test_outputs_are_writable_and_their_own(mlp, cnn, data):
    x, xi = data["x1"].copy(), data["img1"].copy()
    p = mlp.init(0)
    kept = {k: v.copy() for k, v in p.items()}
    y = mlp.apply(p, x)
    outputs = [y, ntkit.empirical_ntk(mlp, p, x, mode="full"), ntkit.empirical_ntk(mlp, p, x),
               ntkit.kernel(mlp, x.astype(np.float64)), ntkit.kernel(cnn, xi, dtype="float32"),
               ntkit.NTKSketch(64).fit_transform(x), ntkit.GradientFeatures(mlp, 64).fit_transform(x, params=p)]
    want = [o.copy() for o in outputs]
    for out in outputs:
        assert out.flags.writeable and out.flags.c_contiguous
        assert not np.shares_memory(out, x) and not np.shares_memory(out, xi)
        assert not any(np.shares_memory(out, v) for v in p.values())
        assert not any(np.shares_memory(out, o) for o in outputs if o is not out)
        out[...] = 0  # writing to it touches nothing else
    assert np.array_equal(x, data["x1"]) and np.array_equal(xi, data["img1"])
    assert all(np.array_equal(p[k], kept[k]) for k in p)
    assert np.array_equal(mlp.apply(p, x), want[0])
    fresh = mlp.init(0)  # parameters are arrays of their own too
    for v in fresh.values():
        v[...] = 0
    assert np.array_equal(mlp.init(0)["0.W"], kept["0.W"])
    y = mlp.apply(p, x)
    del p, x
    assert np.array_equal(y, want[0])  # the array keeps its own buffer alive


# ---------------------------------------------------------------------------------------------
# 7. Progress, exceptions and the GIL


def test_progress_callbacks(mlp, cnn, data):
    x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    pairs = 40 * 41 // 2
    for kw in ({}, {"tile": 8}):
        calls = []
        ntkit.empirical_ntk(mlp, 0, x, progress=lambda d, t: calls.append((d, t)), threads=THREADS, **kw)
        assert calls and calls[-1] == (pairs, pairs)
        assert all(t == pairs for _, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) > 1  # tiles of 8: several reports
    calls = []
    ntkit.kernel(mlp, x, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] > 0
    calls = []
    ntkit.NTKSketch(64).fit_transform(x, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (40, 40)


class Stop(Exception):
    pass


def test_exception_in_progress_propagates_and_leaves_no_file(tmp_path, mlp, data):
    x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    raised = Stop("from the callback")

    def stop(done, total):
        raise raised

    for out_of_core in (False, True):
        with pytest.raises(Stop) as e:
            ntkit.empirical_ntk(mlp, 0, x, tile=8, progress=stop, out=tmp_path / "k.npy", out_of_core=out_of_core)
        assert e.value is raised
        assert listing(tmp_path) == []
    with pytest.raises(Stop):
        ntkit.kernel(mlp, x, progress=stop, out=tmp_path / "k.npy")
    with pytest.raises(Stop):
        ntkit.NTKSketch(64).fit(x).transform(x, progress=stop, out=tmp_path / "f.npy")
    assert listing(tmp_path) == []
    # the next call works
    assert ntkit.empirical_ntk(mlp, 0, x, progress=lambda d, t: None).shape == (40, 40)


def test_gil_is_released_during_a_computation():
    """A thread that ticks every millisecond keeps ticking through a ~1 s eNTK (Jacobian contraction, one thread)."""
    net = ntkit.Network("Dense(256), Relu, Dense(256), Relu, Dense(10)", (32,))
    x = np.random.default_rng(0).standard_normal((160, 32)).astype(np.float32)
    stamps, stop = [], threading.Event()

    def tick():
        while not stop.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    try:
        time.sleep(0.05)
        t0 = time.perf_counter()
        k = ntkit.empirical_ntk(net, 0, x, mode="trace", method="jc", max_memory="256M", threads=1)
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    assert k.shape == (160, 160)
    duration = t1 - t0
    assert duration > 0.3, f"the computation took {duration:.3f} s: too short to tell"
    middle = [s for s in stamps if t0 + 0.1 * duration < s < t1 - 0.1 * duration]
    # at most one tick per ms; with the GIL held for the whole call there would be none
    assert len(middle) > 0.1 * (0.8 * duration) / 0.001, (len(middle), duration)


# ---------------------------------------------------------------------------------------------
# 8. Any layout and element type


def test_noncontiguous_and_other_dtypes(mlp, data):
    x = data["x1"]
    p = mlp.init(0)
    transposed = np.ascontiguousarray(x.T).T  # F order
    strided = np.repeat(x, 2, axis=0)[::2]
    reversed_rows = np.flip(np.flip(x, 0).copy(), 0)  # negative strides
    big_endian = x.astype(">f4")
    variants = {"transposed": (transposed, x), "strided": (strided, x), "reversed": (reversed_rows, x),
                "big-endian": (big_endian, x),
                "float16": (x.astype(np.float16), x.astype(np.float16).astype(np.float32))}
    ints = np.round(x * 4)
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        xi = np.abs(ints).astype(dt) if np.dtype(dt).kind == "u" else ints.astype(dt)
        variants[np.dtype(dt).name] = (xi, xi.astype(np.float32))
    for name, (a, want) in variants.items():
        assert not (name in ("transposed", "strided", "reversed") and a.flags.c_contiguous)
        assert np.array_equal(a, want.astype(a.dtype)), name
        y = mlp.apply(p, a)
        assert y.dtype == np.float32 and np.array_equal(y, mlp.apply(p, want)), name
        k = ntkit.empirical_ntk(mlp, p, a, a[:5], mode="pntk")
        assert np.array_equal(k, ntkit.empirical_ntk(mlp, p, want, want[:5], mode="pntk")), name
        assert np.array_equal(ntkit.kernel(mlp, a), ntkit.kernel(mlp, want)), name
        assert np.array_equal(ntkit.NTKSketch(64).fit_transform(a), ntkit.NTKSketch(64).fit_transform(want)), name
    # float64 layouts stay float64
    x64 = x.astype(np.float64)
    y = mlp.apply(p, np.asfortranarray(x64))
    assert y.dtype == np.float64 and np.array_equal(y, mlp.apply(p, x64))
    # kernels and targets given to the solvers: any layout, integer kernels as float64
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 8))
    k = a @ a.T + 8 * np.eye(8)
    y = np.arange(8) % 2
    want = ntkit.kernel_ridge(k, y.astype(np.int64), k[:3], ridge=0.1).predictions
    assert np.array_equal(ntkit.kernel_ridge(np.asfortranarray(k), y.astype(np.uint8), k[:3].astype(">f8"),
                                             ridge=0.1).predictions, want)
    ki = np.round(k * 10).astype(np.int32)
    assert ntkit.spectrum(ki) == ntkit.spectrum(ki.astype(np.float64))
    assert ntkit.compare(ki, ki.T) == ntkit.compare(ki.astype(np.float64), ki.T.astype(np.float64))


def test_numpy_keeps_its_blas_threads(mlp, data):
    """ntkit runs OpenBLAS single-threaded while it works (it calls BLAS from its own threads), but
    NumPy and PyTorch link the same OpenBLAS: importing ntkit must not leave them single-threaded.
    The count is OpenBLAS's own (as a process without ntkit sees it) outside ntkit's calls, and 1
    inside them (seen from a progress callback, which runs while the job does)."""
    import ctypes
    try:
        blas = ctypes.CDLL("libopenblas.so.0")  # the instance ntkit and NumPy already loaded
    except OSError:
        pytest.skip("libopenblas.so.0 not found: ntkit is linked against another BLAS")
    probe = "import ctypes; print(ctypes.CDLL('libopenblas.so.0').openblas_get_num_threads())"
    own = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert blas.openblas_get_num_threads() == own == ntkit._core.host_blas_threads()
    inside = []
    ntkit.empirical_ntk(mlp, 0, data["x1"], mode="pntk", tile=2,
                        progress=lambda done, total: inside.append(blas.openblas_get_num_threads()))
    assert inside and set(inside) == {1}
    assert blas.openblas_get_num_threads() == own
