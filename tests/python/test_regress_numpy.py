"""`ntk regress` at t = inf against numpy.linalg.solve (always-run tier: needs only NumPy).

Kernel ridge regression: predictions KT (K + λI)⁻¹ Y with λ = ridge · trace(K) / N (relative, the
default, neural-tangents' diag_reg) or λ = ridge (--ridge-absolute), for float targets, integer
class labels (one-hot targets: 1 for the class, 0 elsewhere) and float32 kernels (converted to
float64 before solving). The metric is max|a - b| / max|b| <= 1e-8.

The ntk binary is $NTK_BIN, by default <repo>/build/ntk; the tests skip if it is missing.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1].parent
NTK_BIN = Path(os.environ.get("NTK_BIN", REPO / "build" / "ntk"))
N, M = 40, 11
TOL = 1e-8



@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    d = tmp_path_factory.mktemp("regress_numpy")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N + M, 60))
    k = np.exp(x @ x.T / 60)  # positive definite (entrywise exp of a Gram matrix), not a plain Gram matrix
    out = {"K": k[:N, :N], "KT": k[N:, :N], "Y": rng.standard_normal((N, 4)),
           "L": rng.integers(0, 5, N).astype(np.int32), "LT": rng.integers(0, 5, M).astype(np.int64)}
    paths = {}
    for name, a in out.items():
        paths[name] = d / f"{name}.npy"
        np.save(paths[name], np.ascontiguousarray(a))
    paths["K32"], paths["KT32"] = d / "K32.npy", d / "KT32.npy"
    np.save(paths["K32"], out["K"].astype(np.float32))
    np.save(paths["KT32"], out["KT"].astype(np.float32))
    return out, paths


def run(ntk_bin, *args):
    r = subprocess.run([str(ntk_bin), "regress", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("ridge,absolute", [(0.0, False), (0.1, False), (0.05, True)])
def test_float_targets_equal_numpy_solve(ntk_bin, kernels, tmp_path, ridge, absolute):
    a, p = kernels
    out = tmp_path / "p.npy"
    run(ntk_bin, "--k-train", p["K"], "--k-test", p["KT"], "--y-train", p["Y"], "--ridge", ridge, "-o", out,
        *(["--ridge-absolute"] if absolute else []))
    lam = ridge if absolute else ridge * np.trace(a["K"]) / N
    want = a["KT"] @ np.linalg.solve(a["K"] + lam * np.eye(N), a["Y"])
    got = np.load(out)
    assert got.dtype == np.float64 and got.shape == (M, 4)
    assert rel_err(got, want) <= TOL


def test_labels_become_one_hot_and_report_accuracy(ntk_bin, kernels, tmp_path):
    a, p = kernels
    out = tmp_path / "p.npy"
    r = run(ntk_bin, "--k-train", p["K"], "--k-test", p["KT"], "--y-train", p["L"], "--y-test", p["LT"],
            "--ridge", "1e-3", "--json", "-o", out)
    classes = int(max(a["L"].max(), a["LT"].max())) + 1
    y = np.eye(classes)[a["L"]]
    want = a["KT"] @ np.linalg.solve(a["K"] + 1e-3 * np.trace(a["K"]) / N * np.eye(N), y)
    got = np.load(out)
    assert got.shape == (M, classes) and rel_err(got, want) <= TOL
    res = json.loads(r.stdout)
    assert res["classes"] == classes and res["solver"] == "cholesky"
    (line,) = res["results"]
    assert line["time"] == "inf"
    assert line["test_accuracy"] == pytest.approx(np.mean(want.argmax(1) == a["LT"]), abs=1e-15)
    assert line["test_mse"] == pytest.approx(np.mean((want - np.eye(classes)[a["LT"]]) ** 2), rel=1e-10)


def test_float32_kernels_are_solved_in_float64(ntk_bin, kernels, tmp_path):
    a, p = kernels
    out = tmp_path / "p.npy"
    run(ntk_bin, "--k-train", p["K32"], "--k-test", p["KT32"], "--y-train", p["Y"], "--ridge", "0.01", "-o", out)
    k, kt = a["K"].astype(np.float32).astype(np.float64), a["KT"].astype(np.float32).astype(np.float64)
    want = kt @ np.linalg.solve(k + 0.01 * np.trace(k) / N * np.eye(N), a["Y"])
    assert rel_err(np.load(out), want) <= TOL


def test_finite_time_equals_the_eigenbasis_formula(ntk_bin, kernels, tmp_path):
    a, p = kernels
    out = tmp_path / "p.npy"
    run(ntk_bin, "--k-train", p["K"], "--k-test", p["KT"], "--y-train", p["Y"], "--time", "0.5,inf",
        "--learning-rate", "2", "-o", out)
    w, v = np.linalg.eigh(a["K"])
    size = a["Y"].size
    f = lambda t: a["KT"] @ (v @ np.diag(-np.expm1(-w * 2 * t / size) / w) @ v.T @ a["Y"])  # noqa: E731
    got = np.load(out)
    assert got.shape == (2, M, 4)
    assert rel_err(got[0], f(0.5)) <= TOL
    assert rel_err(got[1], a["KT"] @ np.linalg.solve(a["K"], a["Y"])) <= TOL
