"""`ntk regress` against JAX neural-tangents' predict module (optional tier, like test_nt_kernels).

neural-tangents lives in its own venv (scripts/install-nt.sh -> build-nt/venv); these tests skip
when it is missing, exactly as test_nt_kernels.py does. On random float64 kernels (Gram matrices
of random features: positive definite, and one of rank 5 < N) and float targets:
  - gradient_descent_mse: test predictions at t = 0, finite times and inf (nt's t=None), with a
    learning rate, a relative and an absolute diag_reg, and train predictions (ntk's are the
    in-sample outputs, nt's "regularized train predictions": k_test_train = k_train_train);
  - gp_inference: posterior mean and covariance for get='nngp' and get='ntk' (the NTK posterior
    takes both kernels).
All of neural-tangents' side runs in one process (tests/python/nt_predict.py --jobs).

The metric is max|a - b| / max|b| per time, a = ntkit, b = neural-tangents: <= 1e-8 (at t = 0
from zero outputs b is zero, and a must be too).

The ntk binary is $NTK_BIN, by default <repo>/build/ntk; the neural-tangents python is
$NT_PYTHON, by default <repo>/build-nt/venv/bin/python.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import nt_python_checked

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NTK_BIN = Path(os.environ.get("NTK_BIN", REPO / "build" / "ntk"))

TOL = 1e-8
N, M, O = 14, 6, 3

# name: (kernel, times, learning rate, ridge, absolute). nt's t = inf is a Cholesky factor without
# jitter, so the rank-deficient kernel goes to inf only with a ridge.
GD_CASES = {
    "psd": ("psd", [0, 0.3, 2.0, 50.0, "inf"], 1.0, 0.0, False),
    "psd-lr-relative-ridge": ("psd", [0, 0.7, 5.0, "inf"], 1.5, 0.1, False),
    "psd-absolute-ridge": ("psd", [0.2, 3.0, "inf"], 0.5, 0.05, True),
    "rank5-finite": ("rank5", [0, 0.3, 2.0, 40.0], 1.0, 0.0, False),
    "rank5-ridge-inf": ("rank5", [1.0, "inf"], 1.0, 1e-2, False),
}
GP_CASES = {f"{get}-ridge{r:g}": (get, r) for get in ("nngp", "ntk") for r in (0.0, 1e-3)}


def rel_err(a, b):
    """max|a - b| / max|b|; where b is all zeros (t = 0 from zero outputs), max|a| itself."""
    top = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / (top if top > 0 else 1.0))



@pytest.fixture(scope="module")
def nt_python():
    return nt_python_checked(HERE / "nt_predict.py")


def gram_split(f, d):
    """Train (N, N), test-train (M, N), test-test (M, M) of the Gram matrix of features f (N + M rows)."""
    k = f @ f.T / f.shape[1]
    paths = {}
    for name, block in (("k", k[:N, :N]), ("kt", k[N:, :N]), ("ktt", k[N:, N:])):
        paths[name] = str(d / f"{name}.npy")
        np.save(paths[name], np.ascontiguousarray(block))
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("nt_predict_inputs")
    rng = np.random.default_rng(20240611)
    x = rng.standard_normal((N + M, 40))
    kernels = {}
    for name, feats in (("psd", x),                                            # positive definite
                        ("rank5", x[:, :5]),                                   # rank 5 < N
                        ("relu", np.maximum(x @ rng.standard_normal((40, 60)), 0) / 3)):  # a second kernel (GP's NNGP)
        (root / name).mkdir()
        kernels[name] = gram_split(feats, root / name)
    y = str(root / "y.npy")
    np.save(y, rng.standard_normal((N, O)))
    return {"kernels": kernels, "y": y}


@pytest.fixture(scope="module")
def nt_results(nt_python, data, tmp_path_factory):
    d = tmp_path_factory.mktemp("nt_predict_out")
    ks, jobs, out = data["kernels"], [], {}
    for name, (kernel, times, lr, ridge, absolute) in GD_CASES.items():
        out[name] = {"train": str(d / f"{name}_train.npy"), "test": str(d / f"{name}_test.npy")}
        jobs.append({"kind": "gd", "k": ks[kernel]["k"], "kt": ks[kernel]["kt"], "y": data["y"], "times": times,
                     "lr": lr, "diag_reg": ridge, "absolute": absolute, **out[name]})
    for name, (get, ridge) in GP_CASES.items():
        out[name] = {"mean": str(d / f"{name}_mean.npy"), "cov": str(d / f"{name}_cov.npy")}
        # nngp: the NNGP is the relu kernel; ntk: the NTK is the psd kernel and the NNGP the relu one.
        main = ks["relu"] if get == "nngp" else ks["psd"]
        job = {"kind": "gp", "get": get, "y": data["y"], "diag_reg": ridge, **main, **out[name]}
        if get == "ntk":
            job.update({f"nngp_{k}": v for k, v in ks["relu"].items()})
        jobs.append(job)
    (d / "jobs.json").write_text(json.dumps(jobs, indent=1))
    r = subprocess.run([str(nt_python), str(HERE / "nt_predict.py"), "--jobs", str(d / "jobs.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"nt_predict.py failed:\n{r.stderr[-4000:]}"
    return {name: {k: np.load(v) for k, v in paths.items()} for name, paths in out.items()}


def regress(ntk_bin, args):
    r = subprocess.run([str(ntk_bin), "regress", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"ntk regress {' '.join(args)} failed:\n{r.stderr}"
    return r


@pytest.mark.parametrize("case", list(GD_CASES))
def test_gradient_descent_mse_matches_neural_tangents(ntk_bin, data, nt_results, tmp_path, case):
    kernel, times, lr, ridge, absolute = GD_CASES[case]
    k = data["kernels"][kernel]
    pred, train = tmp_path / "p.npy", tmp_path / "pt.npy"
    args = ["--k-train", k["k"], "--k-test", k["kt"], "--y-train", data["y"],
            "--time", ",".join(str(t) for t in times), "--learning-rate", str(lr), "--ridge", str(ridge),
            "-o", str(pred), "--train-predictions", str(train)]
    regress(ntk_bin, args + (["--ridge-absolute"] if absolute else []))
    want = nt_results[case]
    assert np.all(np.isfinite(want["test"])) and np.all(np.isfinite(want["train"]))
    a_test, a_train = np.load(pred), np.load(train)
    assert a_test.dtype == np.float64 and a_test.shape == (len(times), M, O) if len(times) > 1 else a_test.shape == (M, O)
    for what, a, b in (("test", a_test, want["test"]), ("train", a_train, want["train"])):
        a = a.reshape(b.shape)
        for i, t in enumerate(times):
            err = rel_err(a[i], b[i])
            print(f"{case} {what} t={t}: max rel err {err:.3e}")
            assert err <= TOL, f"{case} {what} t={t}: max|a-b|/max|b| = {err:.3e} > {TOL:.0e}"


@pytest.mark.parametrize("case", list(GP_CASES))
def test_gp_inference_matches_neural_tangents(ntk_bin, data, nt_results, tmp_path, case):
    get, ridge = GP_CASES[case]
    ks = data["kernels"]
    mean, cov = tmp_path / "mean.npy", tmp_path / "cov.npy"
    if get == "nngp":
        k = ks["relu"]
        extra = ["--k-test-test", k["ktt"]]
    else:
        k, g = ks["psd"], ks["relu"]
        extra = ["--nngp-train", g["k"], "--nngp-test", g["kt"], "--nngp-test-test", g["ktt"]]
    regress(ntk_bin, ["--k-train", k["k"], "--k-test", k["kt"], "--y-train", data["y"], "--ridge", str(ridge),
                      "-o", str(mean), "--covariance", str(cov), *extra])
    want = nt_results[case]
    for what, a, b in (("mean", np.load(mean), want["mean"]), ("covariance", np.load(cov), want["cov"])):
        assert a.shape == b.shape and np.all(np.isfinite(b))
        err = rel_err(a, b)
        print(f"{case} {what}: max rel err {err:.3e}")
        assert err <= TOL, f"{case} {what}: max|a-b|/max|b| = {err:.3e} > {TOL:.0e}"
