"""Determinism (issue 16): bit-identical output for 1 and 2 threads from every eNTK method (in
memory and out of core, a CNN and an MLP large enough that its GEMMs are split over threads), the
infinite-width kernels (offset path and MLP) and the feature maps. Work that is one BLAS call per
piece is split by size, never by the thread count (blas.hpp, kParallelChunks), because OpenBLAS
rounds by the shapes it is given. Tile sizes change those shapes: there the kernels agree to
rounding, not bit for bit (docs/failure-modes.md), which is why a checkpoint records its tile."""
import subprocess

import numpy as np
import pytest

CNN = "Conv(8, 3, padding=SAME), Relu, Conv(8, 3, padding=SAME), Relu, GlobalAvgPool, Dense(3)"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("det")
    rng = np.random.default_rng(5)
    np.save(d / "img.npy", rng.random((40, 6, 6, 2), dtype=np.float32))
    np.save(d / "v.npy", rng.random((700, 12)))
    return d


def _bytes(ntk_bin, argv, out):
    subprocess.run([str(ntk_bin), *argv, "-o", str(out), "-q"], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("method", ["jc", "vp", "sd"])
@pytest.mark.parametrize("placement", [[], ["--out-of-core"]])
@pytest.mark.parametrize("net", ["cnn", "mlp"])
def test_entk_is_bit_identical_for_1_and_2_threads(ntk_bin, inputs, tmp_path, method, placement, net):
    if net == "cnn":
        argv = ["entk", "--net", CNN, "--seed", "3", "--x1", str(inputs / "img.npy"), "--mode", "full", "--tile", "8"]
    else:  # N·O = 2100 Jacobian rows: the contraction is split into blocks over the threads
        argv = ["entk", "--net", "Dense(64), Relu, Dense(3)", "--seed", "3", "--x1", str(inputs / "v.npy"),
                "--mode", "full"]
    argv += ["--method", method, *placement]
    one = _bytes(ntk_bin, [*argv, "--threads", "1"], tmp_path / "one.npy")
    two = _bytes(ntk_bin, [*argv, "--threads", "2"], tmp_path / "two.npy")
    assert one == two


def test_kernel_and_features_are_bit_identical_for_1_and_2_threads(ntk_bin, inputs, tmp_path):
    for argv in (["kernel", "--net", "Conv(4, 3, padding=SAME), Relu, GlobalAvgPool, Dense(1)",
                  "--x1", str(inputs / "img.npy")],
                 ["kernel", "--net", "Conv(4, 3, padding=SAME), Relu, GlobalAvgPool, Dense(1)",
                  "--x1", str(inputs / "img.npy"), "--out-of-core", "--dtype", "float32"],
                 ["kernel", "--net", "Dense(16), Relu, Dense(1)", "--x1", str(inputs / "v.npy")],
                 ["kernel", "--net", "Dense(16), Relu, Dense(1)", "--x1", str(inputs / "v.npy"), "--out-of-core"],
                 ["features", "--sketch", "ntk", "--depth", "2", "--dim", "256", "-x", str(inputs / "v.npy")],
                 ["features", "--sketch", "ntkrf", "--depth", "2", "--dim", "256", "-x", str(inputs / "v.npy")]):
        one = _bytes(ntk_bin, [*argv, "--threads", "1"], tmp_path / "one.npy")
        two = _bytes(ntk_bin, [*argv, "--threads", "2"], tmp_path / "two.npy")
        assert one == two, argv


def test_tile_sizes_agree_to_rounding(ntk_bin, inputs, tmp_path):
    argv = ["entk", "--net", CNN, "--seed", "3", "--x1", str(inputs / "img.npy"), "--mode", "full", "--method", "sd",
            "--dtype", "float64"]
    ref = None
    for tile in ("5", "8", "40"):
        _bytes(ntk_bin, [*argv, "--tile", tile], tmp_path / f"t{tile}.npy")
        k = np.load(tmp_path / f"t{tile}.npy")
        if ref is None:
            ref = k
        np.testing.assert_allclose(k, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
