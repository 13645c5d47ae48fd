"""The Python package against JAX neural-tangents (optional tier: runs where scripts/install-nt.sh
installed it; scripts/test.sh fails if it skips while PyPI answered).

  ntkit.kernel(net, x1, x2)              = nt's stax kernel_fn, for nngp and ntk, on a sample of
                                           tests/python/nt_kernel.ARCHS (vectors and images)
  ntkit.empirical_ntk(net, params, ...)  = nt.empirical_ntk_fn(trace_axes=()) at the same
                                           parameters (tests/python/nt_entk.py), modes full,
                                           trace (mean over the O outputs) and pntk ((1/O) Σ_jk Θ_jk),
                                           for nt's three implementations and ntkit's three methods

neural-tangents runs in its own venv (a subprocess); ntkit in this process, in float64.
Metric max|a - b| / max|b| <= 1e-8 (as tests/python/test_nt_kernels.py, which checks the CLI).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import nt_python_checked

import ntkit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import nt_entk  # noqa: E402  (tables only; importing them needs no JAX)
import nt_kernel  # noqa: E402

TOL = 1e-8
KERNEL_ARCHS = ["relu_ntk_bias", "relu_standard", "erf", "residual_mlp", "cnn_gap", "cnn_strided_same_gap",
                "cnn_avgpool"]
SHAPES = {"vec": ((5, 7), (3, 7)), "img": ((4, 6, 6, 2), (3, 6, 6, 2))}


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def nt_python():
    return nt_python_checked(HERE / "nt_kernel.py")


def inputs(tmp_path, kind, seed=5):
    rng = np.random.default_rng(seed)
    x1, x2 = (rng.standard_normal(s) for s in SHAPES[kind])
    np.save(tmp_path / "x1.npy", x1)
    np.save(tmp_path / "x2.npy", x2)
    return x1, x2


def test_kernel_equals_neural_tangents(nt_python, tmp_path):
    jobs, ours = [], {}
    for arch in KERNEL_ARCHS:
        kind, spec, _ = nt_kernel.ARCHS[arch]
        d = tmp_path / arch
        d.mkdir()
        x1, x2 = inputs(d, kind)
        net = ntkit.Network(spec, x1.shape[1:])
        for case, second in (("sym", None), ("x1x2", x2)):
            ours[(arch, case)] = {get: ntkit.kernel(net, x1, second, get=get) for get in ("nngp", "ntk")}
            jobs.append({"arch": arch, "x1": str(d / "x1.npy"), "x2": None if second is None else str(d / "x2.npy"),
                         "nngp": str(d / f"{case}_nngp.npy"), "ntk": str(d / f"{case}_ntk.npy")})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([str(nt_python), str(HERE / "nt_kernel.py"), "--jobs", str(tmp_path / "jobs.json")], check=True,
                   capture_output=True)
    for job in jobs:
        case = "sym" if job["x2"] is None else "x1x2"
        for get in ("nngp", "ntk"):
            ref = np.load(job[get])
            assert rel(ours[(job["arch"], case)][get], ref) <= TOL, (job["arch"], case, get)


@pytest.mark.parametrize("arch", sorted(nt_entk.ARCHS))
def test_empirical_ntk_equals_neural_tangents(nt_python, tmp_path, arch):
    kind, spec, _ = nt_entk.ARCHS[arch]
    x1, x2 = inputs(tmp_path, kind, seed=11)
    net = ntkit.Network(spec, x1.shape[1:])
    params = net.init(seed=4, dtype="float64")
    np.savez(tmp_path / "p.npz", **params)
    for implementation in (1, 2, 3):
        out = tmp_path / f"nt_{implementation}.npy"
        subprocess.run([str(nt_python), str(HERE / "nt_entk.py"), arch, "--params", str(tmp_path / "p.npz"),
                        "--x1", str(tmp_path / "x1.npy"), "--x2", str(tmp_path / "x2.npy"), "--out", str(out),
                        "--implementation", str(implementation)], check=True, capture_output=True)
        full_ref = np.load(out)
        o = full_ref.shape[-1]
        assert full_ref.shape == (len(x1), len(x2), o, o) and o == 3
        for method in ("jc", "vp", "sd"):
            full = ntkit.empirical_ntk(net, params, x1, x2, mode="full", method=method)
            assert rel(full, full_ref) <= TOL, (implementation, method)
            trace = ntkit.empirical_ntk(net, params, x1, x2, mode="trace", method=method)
            assert rel(trace, np.einsum("ijaa->ij", full_ref) / o) <= TOL
            pntk = ntkit.empirical_ntk(net, params, x1, x2, mode="pntk", method=method)
            assert rel(pntk, full_ref.sum(axis=(2, 3)) / o) <= TOL


def test_demo_times_neural_tangents_beside_ntkit(tmp_path):
    """`ntk demo --parts 1` with neural-tangents: its three implementations are timed on the same
    network and parameters and their kernels agree with ntkit's."""
    import ntkit.demo
    py = nt_python_checked(Path(ntkit.demo.__file__).with_name("nt_worker.py"))
    r = subprocess.run([str(Path(sys.executable).parent / "ntk"), "demo", "--quick", "--parts", "1", "--nt-python",
                        str(py), "--out", str(tmp_path)], capture_output=True, text=True,
                       env=dict(os.environ, NTKIT_PYTHON=sys.executable))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["versions"]["neural-tangents"] and "neural-tangents" in (tmp_path / "report.md").read_text()
    for arch in res["entk"]["archs"]:
        nt = {r["method"]: r for r in arch["runs"] if r["tool"] == "neural-tangents"}
        assert set(nt) == {"jc", "vp", "sd"}
        for run in nt.values():
            assert run["relative_difference"] < 1e-4 and run["median_seconds"] > 0
