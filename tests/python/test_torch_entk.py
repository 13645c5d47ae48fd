"""`ntk entk` against the PyTorch functorch peer (../shared/bench/peers/torch_entk.py) on identical
weights and inputs: the peer's MLP and CNN, modes full / trace / pntk, every ntkit method, float32
and float64. Metric: max|a - b| / max|b|, at most 1e-5 in float32 and 1e-10 in float64.
"""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
NTK_BIN = Path(os.environ.get("NTK_BIN", REPO / "build" / "ntk"))
PEER = REPO.parent / "shared" / "bench" / "peers" / "torch_entk.py"
TOL = {"float32": 1e-5, "float64": 1e-10}
SPECS = {
    "mlp": "Dense({W}, b_std=0), Relu, Dense({W}, b_std=0), Relu, Dense(10, b_std=0)",
    "cnn": "Conv({W}, 3, padding=SAME, b_std=0), Relu, Conv({W}, 3, padding=SAME, b_std=0), Relu, "
           "GlobalAvgPool, Dense(10, b_std=0)",
}
WIDTH = {"mlp": 64, "cnn": 8}


@pytest.fixture(scope="module")
def tools():
    if not NTK_BIN.is_file():
        pytest.fail(f"ntk binary not found at {NTK_BIN}; build it first")
    if not PEER.is_file():
        pytest.skip(f"peer script not found at {PEER}")
    return NTK_BIN, PEER


def peer_kernel(peer, arch, params, x, method, mode, dtype, out):
    cmd = ["/usr/bin/python3", str(peer), "--arch", arch, "--width", str(WIDTH[arch]), "--params", str(params),
           "--x", str(x), "--out", str(out), "--method", method, "--mode", mode, "--dtype", dtype, "--threads", "2"]
    subprocess.run(cmd, check=True, capture_output=True)
    return np.load(out)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_entk_matches_functorch(tools, tmp_path, arch, dtype):
    ntk, peer = tools
    spec = SPECS[arch].format(W=WIDTH[arch])
    shape = "784" if arch == "mlp" else "28,28,1"
    params = tmp_path / "p.npz"
    subprocess.run([str(ntk), "init", "--net", spec, "--parameterization", "standard", "--input-shape", shape,
                    "--seed", "3", "--dtype", dtype, "-q", "-o", str(params)], check=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 784) if arch == "mlp" else (5, 28, 28, 1)).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    cases = [("jc", "full", "full"), ("jc", "trace", "trace"), ("pntk", "full", "pntk")]
    for peer_method, peer_mode, mode in cases:
        ref = peer_kernel(peer, arch, params, tmp_path / "x.npy", peer_method, peer_mode, dtype, tmp_path / "ref.npy")
        for method in ["jc", "vp", "sd", "auto"]:
            out = tmp_path / f"k_{mode}_{method}.npy"
            subprocess.run([str(ntk), "entk", "--net", spec, "--parameterization", "standard", "--params", str(params),
                            "--x1", str(tmp_path / "x.npy"), "--mode", mode, "--method", method, "--dtype", dtype,
                            "-q", "-o", str(out)], check=True)
            k = np.load(out)
            assert k.shape == ref.shape, (mode, method)
            assert k.dtype == np.dtype(dtype)
            err = np.abs(k.astype(np.float64) - ref).max() / np.abs(ref).max()
            assert err <= TOL[dtype], f"{arch} {dtype} {mode} {method}: relative error {err:.3g}"
