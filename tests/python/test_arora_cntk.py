"""`ntk kernel` on conv nets against an independent NumPy oracle of Arora et al.'s exact CNTK.

The oracle (tests/python/arora_cntk.py) follows Arora et al. 2019 ("On Exact Computation with an
Infinitely Wide Neural Net", Section 4; released code github.com/ruosongwang/CNTK): Sigma^(0) is the
channel *sum* of x (outer) x' summed over the 3x3 patch, each ReLU layer carries c_sigma/q^2 = 2/9
and a patch *sum*, zero padding, GAP = mean over all pixel pairs. The ntkit side uses
neural-tangents' conventions. With C input channels and

    S_L = L x [Conv(1, 3, padding=SAME, W_std=sqrt(2), b_std=none), Relu], GlobalAvgPool, Dense(1, W_std=1, b_std=none)
    P   = Conv(1, 1, W_std=1, b_std=none)          (a 1x1 linear layer put in front of S_L)

the identities checked here (docs/cntk.md derives them) are, for L conv layers (their code's
--depth is L + 1):

    fully trained CNTK-GAP (their code --gap yes --fix no) = C * ntk(S_L)
    CNN-GP with GAP (mean of K^(L))                         = C * nngp(S_L)
    paper's CNTK-GAP, first and last layer fixed (--fix yes, their Table 1)
                                                            = C * (2 ntk(S_L) - ntk(P, S_L) - nngp(S_L))
    first conv with W_std = sqrt(2C) instead of sqrt(2)     : the factor C disappears
    CNTK-V (Flatten readout, their --gap no --fix no)       = C * H * W * ntk(S_L with Flatten)

Metric: max|a - b| / max|b| with b the oracle, <= 1e-10 in float64 (observed ~1e-15). The paper's
CNTK-GAP is identically zero for L = 1 (no trained layer is left); there the combination must be
zero up to 1e-10 of the fully trained kernel's scale.

The oracle itself is checked against a line-by-line NumPy transliteration of the released CUDA
code's algorithm (xx/xz loops, conv3 = 3x3 patch sum, trans with 1/(9 pi)), for any image size.

The ntk binary is $NTK_BIN, by default <repo>/build/ntk; the tests skip if it is missing.
Each CLI call runs with --threads 1 on tiny inputs.
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arora_cntk import arora_cntk, patch_trace  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NTK_BIN = Path(os.environ.get("NTK_BIN", REPO / "build" / "ntk"))
TOL = 1e-10
SQRT2 = repr(math.sqrt(2.0))
SHAPES = [(5, 6, 6, 3), (4, 7, 5, 2), (3, 5, 7, 1)]  # (N, H, W, C), NHWC
DEPTHS = [1, 2, 3, 4]



def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def spec(depth_L, first_w_std=SQRT2, prefix=False, readout="GlobalAvgPool"):
    layers = ["Conv(1, 1, W_std=1, b_std=none)"] if prefix else []
    for h in range(depth_L):
        w = first_w_std if h == 0 else SQRT2
        layers.append(f"Conv(1, 3, padding=SAME, W_std={w}, b_std=none), Relu")
    layers += [readout, "Dense(1, W_std=1, b_std=none)"]
    return ", ".join(layers)


def kernel(ntk, tmp_path, net, x1, x2=None, get="ntk"):
    x1_path, out = tmp_path / "x1.npy", tmp_path / f"k_{get}.npy"
    np.save(x1_path, x1)
    args = [ntk, "kernel", "--net", net, "--x1", x1_path, "--get", get, "--threads", "1", "-o", out, "-q"]
    if x2 is not None:
        x2_path = tmp_path / "x2.npy"
        np.save(x2_path, x2)
        args += ["--x2", x2_path]
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\nexit {proc.returncode}\n{proc.stderr}"
    k = np.load(out)
    assert k.dtype == np.float64 and k.shape == (len(x1), len(x1 if x2 is None else x2))
    return k


def images(shape, seed, n2=None):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal(shape)
    x2 = None if n2 is None else rng.standard_normal((n2,) + shape[1:])
    return x1, x2


PAIRS = [pytest.param(shape, n2, id=f"{'x'.join(map(str, shape))}-{'sym' if n2 is None else 'x2'}")
         for shape in SHAPES for n2 in (None, 2)]


# ---------------------------------------------------------------------------------------------
# ntkit against the oracle


@pytest.mark.parametrize("depth_L", DEPTHS)
@pytest.mark.parametrize("shape,n2", PAIRS)
def test_trained_cntk_gap_is_C_times_ntk(ntk_bin, tmp_path, shape, n2, depth_L):
    x1, x2 = images(shape, 10 * depth_L + len(shape), n2)
    c = shape[-1]
    ref, ref_gp = arora_cntk(x1, x2, depth_L=depth_L, train_first=True, train_last=True, return_nngp=True)
    got = c * kernel(ntk_bin, tmp_path, spec(depth_L), x1, x2, "ntk")
    got_gp = c * kernel(ntk_bin, tmp_path, spec(depth_L), x1, x2, "nngp")
    assert rel_err(got, ref) <= TOL
    assert rel_err(got_gp, ref_gp) <= TOL


@pytest.mark.parametrize("depth_L", DEPTHS)
@pytest.mark.parametrize("shape,n2", PAIRS)
def test_paper_cntk_gap_first_and_last_fixed(ntk_bin, tmp_path, shape, n2, depth_L):
    x1, x2 = images(shape, 100 + depth_L, n2)
    c = shape[-1]
    ref = arora_cntk(x1, x2, depth_L=depth_L, train_first=False, train_last=False)
    a = kernel(ntk_bin, tmp_path, spec(depth_L), x1, x2, "ntk")
    b = kernel(ntk_bin, tmp_path, spec(depth_L, prefix=True), x1, x2, "ntk")
    g = kernel(ntk_bin, tmp_path, spec(depth_L), x1, x2, "nngp")
    got = c * (2.0 * a - b - g)
    if depth_L == 1:  # nothing is trained: the kernel is zero
        assert np.all(ref == 0.0)
        assert np.max(np.abs(got)) <= TOL * c * np.max(np.abs(a))
    else:
        assert rel_err(got, ref) <= TOL


@pytest.mark.parametrize("depth_L", [1, 3])
@pytest.mark.parametrize("shape,n2", PAIRS[:4])
def test_first_layer_w_std_absorbs_the_channel_factor(ntk_bin, tmp_path, shape, n2, depth_L):
    x1, x2 = images(shape, 200 + depth_L, n2)
    net = spec(depth_L, first_w_std=repr(math.sqrt(2.0 * shape[-1])))
    ref, ref_gp = arora_cntk(x1, x2, depth_L=depth_L, train_first=True, train_last=True, return_nngp=True)
    assert rel_err(kernel(ntk_bin, tmp_path, net, x1, x2, "ntk"), ref) <= TOL
    assert rel_err(kernel(ntk_bin, tmp_path, net, x1, x2, "nngp"), ref_gp) <= TOL


@pytest.mark.parametrize("depth_L", [1, 2, 3])
@pytest.mark.parametrize("shape,n2", PAIRS[2:])
def test_cntk_v_flatten_readout(ntk_bin, tmp_path, shape, n2, depth_L):
    x1, x2 = images(shape, 300 + depth_L, n2)
    _, h, w, c = shape
    ref = arora_cntk(x1, x2, depth_L=depth_L, readout="trace", train_first=True, train_last=True)
    got = c * h * w * kernel(ntk_bin, tmp_path, spec(depth_L, readout="Flatten"), x1, x2, "ntk")
    assert rel_err(got, ref) <= TOL


# ---------------------------------------------------------------------------------------------
# The oracle against a transliteration of the released code's algorithm (no ntkit involved)


def released_code_kernel(x, z, depth, gap, fix):
    """Their xx/xz loops for one pair of (H, W, C) images, float64, depth = #conv layers + 1.
    S and T are (H, W, H, W); conv3 is the 3x3 patch sum with zero padding; trans is their ReLU
    step with the 1/(9 pi) constant; the per-pixel norms come from the diagonal of the self kernels."""
    h, w, _ = x.shape

    def conv3(s):
        return patch_trace(s.reshape(1, h, w, 1, h, w))[0, :, :, 0]

    def trans(s, t, lx, lz):
        outer = lx[:, :, None, None] * lz[None, None]
        rho = np.clip(s / outer, -1.0, 1.0)
        bs = (rho * (np.pi - np.arccos(rho)) + np.sqrt(1.0 - rho * rho)) * outer / (9.0 * np.pi)
        sd = (np.pi - np.arccos(rho)) / (9.0 * np.pi)
        return bs, t * sd + bs

    def norms(s):
        return np.sqrt(np.einsum("ijij->ij", s))

    def xx(a):
        s = conv3(np.einsum("ijc,klc->ijkl", a, a))
        t = np.zeros_like(s) if fix else s.copy()
        out = [None]
        for _ in range(1, depth - 1):
            n = norms(s)
            out.append(n)
            s, t = trans(s, t, n, n)
            s, t = conv3(s), conv3(t)
        out.append(norms(s))
        return out

    lx, lz = xx(x), xx(z)
    s = conv3(np.einsum("ijc,klc->ijkl", x, z))
    t = np.zeros_like(s) if fix else s.copy()
    for i in range(1, depth - 1):
        s, t = trans(s, t, lx[i], lz[i])
        s, t = conv3(s), conv3(t)
    s, t = trans(s, t, lx[-1], lz[-1])
    if fix:
        t = t - s
    return t.mean() if gap else np.einsum("ijij->", t)


@pytest.mark.parametrize("readout", ["gap", "trace"])
@pytest.mark.parametrize("fix", [True, False])
@pytest.mark.parametrize("depth_L", [1, 2, 3])
@pytest.mark.parametrize("shape", [(3, 6, 6, 3), (2, 7, 5, 2)])
def test_oracle_matches_released_code_algorithm(shape, depth_L, fix, readout):
    x1, x2 = images(shape, 400 + depth_L, 2)
    gap = readout == "gap"
    ours = arora_cntk(x1, x2, depth_L=depth_L, readout=readout, train_first=not fix, train_last=not fix)
    theirs = np.array([[released_code_kernel(a, b, depth_L + 1, gap, fix) for b in x2] for a in x1])
    if fix and depth_L == 1:
        assert np.all(ours == 0.0) and np.max(np.abs(theirs)) == 0.0
        return
    assert rel_err(ours, theirs) <= 1e-12
    # x' = x: their rho on a pixel's own pair is s / (sqrt(s) sqrt(s)), a rounding error off 1, where
    # arccos has infinite slope (error ~ sqrt(eps)); ours is exactly 1. Hence the looser bound.
    ours_sym = arora_cntk(x1, depth_L=depth_L, readout=readout, train_first=not fix, train_last=not fix)
    theirs_sym = np.array([[released_code_kernel(a, b, depth_L + 1, gap, fix) for b in x1] for a in x1])
    assert rel_err(ours_sym, theirs_sym) <= 1e-7


def test_oracle_basic_properties():
    x, _ = images((4, 5, 6, 2), 7)
    for kwargs in ({}, {"train_first": True, "train_last": True}):
        k = arora_cntk(x, depth_L=3, **kwargs)
        assert np.allclose(k, k.T, rtol=0, atol=1e-14 * np.abs(k).max())
        assert np.linalg.eigvalsh((k + k.T) / 2).min() >= -1e-12 * np.abs(k).max()
        # positively homogeneous of degree 2 in the input scale (no bias anywhere)
        assert rel_err(arora_cntk(3.0 * x, depth_L=3, **kwargs), 9.0 * k) <= 1e-13
