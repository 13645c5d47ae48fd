"""Infinite-width kernels of `ntk kernel` against JAX neural-tangents (optional tier).

neural-tangents lives in its own venv (scripts/install-nt.sh -> build-nt/venv); these tests skip
when it is missing. Every architecture of nt_kernel.ARCHS (an ntkit spec next to the same network
in neural-tangents' stax) is run on random float64 inputs, vectors (N, 7) or NHWC images
(N, 6, 6, 2), both symmetric (x2 omitted) and with x1 != x2, for --get nngp and --get ntk.
neural-tangents computes all of them in one process (tests/python/nt_kernel.py --jobs).

The metric is max|a - b| / max|b|, a = ntkit, b = neural-tangents, both float64: <= 1e-8, except
where the two compute an activation differently (see QUADRATURE below).

The ntk binary is $NTK_BIN, by default <repo>/build/ntk; the neural-tangents python is
$NT_PYTHON, by default <repo>/build-nt/venv/bin/python.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import nt_python_checked

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import nt_kernel  # noqa: E402  (the architecture table; importing it needs no JAX)

NTK_BIN = Path(os.environ.get("NTK_BIN", REPO / "build" / "ntk"))

TOL = 1e-8
# Closed forms (ReLU family, Erf) agree to ~1e-16 off the diagonal. On the diagonal of symmetric
# kernels neural-tangents (not ntkit) is off by up to ~sqrt(eps): it gets the correlation as
# 1 - 1 ulp, so θ = arccos(ρ) ≈ 1.5e-8 instead of 0 (seen: 1.8e-9 Relu, 5.4e-9 Abs; ntkit matches
# a hand computation with θ = 0 exactly). LayerNorm agrees to ~1e-12: nt divides by
# √((Σ11 + eps)(Σ22 + eps)), eps = 1e-12.
#
# Activations computed by quadrature (the tolerance is loosened for these only, to 3-5x the
# difference observed with neural-tangents 0.6.5 on these inputs; see nt_kernel.ARCHS):
#  - Tanh, Sigmoid: neural-tangents has no closed form, so nt_kernel.py uses its
#    ElementwiseNumerical(fn, deg=25); ntkit also uses 25-point bivariate Gauss-Hermite quadrature,
#    but with another change of variables (nt: u = √(2Σ11)·t1, v correlated through t1 and t2;
#    ntkit: a form symmetric in u and v), so the two quadrature errors differ. Seen, max over
#    sym/x1x2 and nngp/ntk: tanh 6.0e-4, sigmoid 4.3e-6.
# Gelu is a closed form on both sides (ntkit: Tsuchida et al.), so it is held to TOL.
QUADRATURE = {"tanh": 2e-3, "sigmoid": 2e-5}

SHAPES = {"vec": ((5, 7), (3, 7)), "img": ((4, 6, 6, 2), (3, 6, 6, 2))}
CASES = ["sym", "x1x2"]  # x2 omitted (x2 = x1), or a distinct x2 with N2 != N1
GETS = ["nngp", "ntk"]


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))



@pytest.fixture(scope="module")
def nt_python():
    return nt_python_checked(HERE / "nt_kernel.py")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """{kind: (x1 path, x2 path)}: small random float64 inputs."""
    d = tmp_path_factory.mktemp("nt_inputs")
    rng = np.random.default_rng(20240607)
    out = {}
    for kind, (s1, s2) in SHAPES.items():
        paths = (d / f"{kind}_x1.npy", d / f"{kind}_x2.npy")
        for shape, path in zip((s1, s2), paths):
            np.save(path, rng.standard_normal(shape))
        out[kind] = paths
    return out


@pytest.fixture(scope="module")
def nt_kernels(nt_python, inputs, tmp_path_factory):
    """{(arch, case, get): neural-tangents kernel}, all computed by one nt_kernel.py process."""
    d = tmp_path_factory.mktemp("nt_out")
    jobs = []
    for arch, (kind, _, _) in nt_kernel.ARCHS.items():
        x1, x2 = inputs[kind]
        for case in CASES:
            jobs.append({"arch": arch, "x1": str(x1), "x2": str(x2) if case == "x1x2" else None,
                         **{get: str(d / f"{arch}_{case}_{get}.npy") for get in GETS}})
    (d / "jobs.json").write_text(json.dumps(jobs, indent=1))
    r = subprocess.run([str(nt_python), str(HERE / "nt_kernel.py"), "--jobs", str(d / "jobs.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"nt_kernel.py failed:\n{r.stderr[-4000:]}"
    return {(j["arch"], "x1x2" if j["x2"] else "sym", get): np.load(j[get])
            for j in jobs for get in GETS}


def ntkit_kernel(ntk_bin, spec, x1, x2, get, out):
    cmd = [str(ntk_bin), "kernel", "--net", spec, "--x1", str(x1), "--get", get, "-o", str(out), "-q"]
    if x2 is not None:
        cmd += ["--x2", str(x2)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"ntk kernel failed for {spec!r}:\n{r.stderr}"
    k = np.load(out)
    assert k.dtype == np.float64
    return k


def test_arch_table_covers_the_brief():
    specs = " ".join(spec for _, spec, _ in nt_kernel.ARCHS.values())
    for layer in ["Relu", "LeakyRelu", "Abs", "Erf", "Gelu", "Tanh", "Sigmoid", "GlobalAvgPool",
                  "Flatten", "AvgPool", "LayerNorm", "Residual", "stride=2", "standard"]:
        assert layer in specs, layer
    assert len(nt_kernel.ARCHS) >= 12


@pytest.mark.parametrize("get", GETS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("arch", list(nt_kernel.ARCHS))
def test_kernel_matches_neural_tangents(ntk_bin, nt_kernels, inputs, tmp_path, arch, case, get):
    kind, spec, _ = nt_kernel.ARCHS[arch]
    x1, x2 = inputs[kind]
    a = ntkit_kernel(ntk_bin, spec, x1, x2 if case == "x1x2" else None, get, tmp_path / "k.npy")
    b = nt_kernels[(arch, case, get)]
    assert a.shape == b.shape
    # The oracle is not degenerate: the kernel varies across pairs (a constant or zero kernel
    # would make the comparison weak).
    assert np.all(np.isfinite(b)) and np.ptp(b) > 1e-3 * np.max(np.abs(b))
    err = rel_err(a, b)
    tol = QUADRATURE.get(arch, TOL)
    print(f"{arch} {case} {get}: max rel err {err:.3e} (tol {tol:.0e})")
    assert err <= tol, f"{arch} ({spec}) {case} {get}: max|a-b|/max|b| = {err:.3e} > {tol:.0e}"
