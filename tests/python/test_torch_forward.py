"""Forward passes of `ntk apply` against PyTorch on identical weights and inputs.

Parameters come from `ntk init` (fixed seeds), inputs are random .npy files (vectors (N, d),
images NHWC (N, H, W, C)), and `ntk apply` computes the outputs. The same network is built in
PyTorch by a small spec -> torch.nn builder below (written independently of ntkit, following the
peer script bench/peers/torch_entk.py for the weight layout):

  Dense W (in, out)      -> nn.Linear.weight = W.T
  Conv W HWIO            -> nn.Conv2d.weight = W.permute(3, 2, 0, 1)   (OIHW)
  NHWC inputs            -> NCHW (x.permute(0, 3, 1, 2)); Flatten permutes back to NHWC first,
                            so the flattened order is ntkit's (H, W, C) order
  NTK parameterization   -> weights rescaled W * W_std / sqrt(fan_in), biases b * b_std
                            (standard parameterization: the stored values are used as they are)
  SAME padding           -> TensorFlow's rule (extra pixel of odd padding after), via ZeroPad2d
  integer padding p, hxw -> PyTorch's own: nn.Conv2d(padding=(h, w)), nn.AvgPool2d(padding=(h, w),
                            count_include_pad=True), p zeros on each side
  LayerNorm              -> F.layer_norm over the channel axis, no affine, eps = 1e-12 default
  Gelu                   -> nn.GELU() (exact erf form); Erf -> torch.erf; Abs -> torch.abs

The comparison metric is the max relative error  max|a - b| / max|b|  with a = ntkit's output and
b = PyTorch's, both in the same dtype; it must be <= 1e-5 in float32 and <= 1e-12 in float64.

The ntk binary is $NTK_BIN, by default <repo>/build/ntk; the tests skip if it is missing.
"""
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

REPO = Path(__file__).resolve().parents[2]
NTK_BIN = Path(os.environ.get("NTK_BIN", REPO / "build" / "ntk"))
TOL = {"float32": 1e-5, "float64": 1e-12}
DTYPES = ["float32", "float64"]
N = 8

MLP = "Dense({W}, b_std=0), Relu, Dense({W}, b_std=0), Relu, Dense(10, b_std=0)"
CNN = ("Conv({W}, 3, padding=SAME, b_std=0), Relu, Conv({W}, 3, padding=SAME, b_std=0), Relu, "
       "GlobalAvgPool, Dense(10, b_std=0)")
STANDARD = {"parameterization": "standard"}



# ---------------------------------------------------------------------------------------------
# Running the CLI


def default_flags(defaults):
    flags = []
    for key, flag in (("W_std", "--W-std"), ("b_std", "--b-std"), ("parameterization", "--parameterization")):
        if key in defaults:
            flags += [flag, str(defaults[key])]
    return flags


def run_cli(args):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\nexit {proc.returncode}\n{proc.stderr}"
    return proc


def ntk_init(ntk, tmp_path, spec, input_shape, dtype, seed, defaults):
    params = tmp_path / "params.npz"
    run_cli([ntk, "init", "--net", spec, "--input-shape", ",".join(map(str, input_shape)), "--seed", seed,
             "--dtype", dtype, *default_flags(defaults), "-o", params])
    return params


def ntk_apply(ntk, tmp_path, spec, params, x, dtype, defaults):
    x_path, y_path = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x_path, x)
    run_cli([ntk, "apply", "--net", spec, "--params", params, "-x", x_path, "-o", y_path, "--dtype", dtype,
             *default_flags(defaults)])
    return np.load(y_path)


# ---------------------------------------------------------------------------------------------
# An independent spec -> torch.nn builder for the subset of the grammar used here


def split_top(text):
    """Splits at commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def parse_spec(spec):
    """[(name, positional args | child layers, keyword args)]"""
    layers = []
    for tok in split_top(spec):
        name, _, inner = tok.partition("(")
        name, inner = name.strip(), inner.rstrip()
        assert not inner or inner.endswith(")"), tok
        inner = inner[:-1]
        if name == "Residual":
            layers.append((name, parse_spec(inner), {}))
            continue
        pos, kw = [], {}
        for a in split_top(inner):
            if "=" in a:
                k, v = a.split("=", 1)
                kw[k.strip()] = v.strip()
            else:
                pos.append(a)
        layers.append((name, pos, kw))
    return layers


def size2(text):
    a, _, b = text.partition("x")
    return int(a), int(b or a)


def integer_padding(text):
    """(h, w) for integer padding (`3` or `1x2`), None for VALID / SAME."""
    return None if text in ("VALID", "SAME") else size2(text)


def same_padding(size, k, s):
    """TensorFlow / neural-tangents SAME: (before, after) with the odd pixel after."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class Residual(torch.nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


class TorchBuilder:
    """Builds torch modules for a parsed spec, loading (and, under NTK parameterization,
    rescaling) the weights of an ntkit parameter file. Shapes are tracked per example in ntkit's
    layout ((d,) or (H, W, C)); the modules themselves run on NCHW images."""

    def __init__(self, params, dtype, W_std=1.0, b_std=None, parameterization="ntk"):
        self.params = params
        self.dtype = getattr(torch, dtype)
        self.defaults = {"W_std": float(W_std), "b_std": None if b_std is None else float(b_std),
                         "parameterization": parameterization}

    def affine(self, kw):
        W_std = float(kw.get("W_std", self.defaults["W_std"]))
        b_std = kw.get("b_std", self.defaults["b_std"])
        b_std = None if b_std in (None, "none") else float(b_std)
        return W_std, b_std, kw.get("parameterization", self.defaults["parameterization"])

    def load(self, module, path, W, fan_in, W_std, b_std, par):
        """W is already in torch's layout (float64); biases come from <path>.b."""
        ntk = par == "ntk"
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(W * (W_std / math.sqrt(fan_in) if ntk else 1.0)))
            if b_std is not None:
                b = self.params[f"{path}.b"].astype(np.float64)
                module.bias.copy_(torch.from_numpy(b * (b_std if ntk else 1.0)))
        return module.to(self.dtype)

    def build(self, layers, shape, prefix=""):
        mods = []
        for i, (name, args, kw) in enumerate(layers):
            path = f"{prefix}{i}"
            if name == "Residual":
                block, out_shape = self.build(args, shape, path + ".")
                assert out_shape == shape
                mods.append(Residual(torch.nn.Sequential(*block)))
            elif name == "Dense":
                assert len(shape) == 1, "the builder supports Dense on vectors only"
                out = int(args[0])
                W_std, b_std, par = self.affine(kw)
                W = self.params[f"{path}.W"].astype(np.float64)
                assert W.shape == (shape[0], out)
                lin = torch.nn.Linear(shape[0], out, bias=b_std is not None, dtype=torch.float64)
                mods.append(self.load(lin, path, W.T.copy(), shape[0], W_std, b_std, par))
                shape = (out,)
            elif name == "Conv":
                H, Wd, C = shape
                out = int(args[0])
                (kh, kw_), (sh, sw) = size2(args[1]), size2(kw.get("stride", "1"))
                W_std, b_std, par = self.affine(kw)
                padding = kw.get("padding", "VALID")
                ph, pw = integer_padding(padding) or (0, 0)
                if padding == "SAME":
                    (pt, pb), (pl, pr) = same_padding(H, kh, sh), same_padding(Wd, kw_, sw)
                    mods.append(torch.nn.ZeroPad2d((pl, pr, pt, pb)))
                    H, Wd = H + pt + pb, Wd + pl + pr
                W = self.params[f"{path}.W"].astype(np.float64)
                assert W.shape == (kh, kw_, C, out)
                conv = torch.nn.Conv2d(C, out, (kh, kw_), stride=(sh, sw), padding=(ph, pw), bias=b_std is not None,
                                       dtype=torch.float64)
                mods.append(self.load(conv, path, W.transpose(3, 2, 0, 1).copy(), kh * kw_ * C, W_std, b_std, par))
                shape = ((H + 2 * ph - kh) // sh + 1, (Wd + 2 * pw - kw_) // sw + 1, out)
            elif name == "AvgPool":
                H, Wd, C = shape
                (kh, kw_) = size2(args[0])
                (sh, sw) = size2(kw["stride"]) if "stride" in kw else (kh, kw_)
                padding = kw.get("padding", "VALID")
                ph, pw = integer_padding(padding) or (0, 0)
                if padding == "SAME":
                    # Zeros count in the average (ntkit and count_include_pad=True agree).
                    (pt, pb), (pl, pr) = same_padding(H, kh, sh), same_padding(Wd, kw_, sw)
                    mods.append(torch.nn.ZeroPad2d((pl, pr, pt, pb)))
                    H, Wd = H + pt + pb, Wd + pl + pr
                mods.append(torch.nn.AvgPool2d((kh, kw_), stride=(sh, sw), padding=(ph, pw), count_include_pad=True))
                shape = ((H + 2 * ph - kh) // sh + 1, (Wd + 2 * pw - kw_) // sw + 1, C)
            elif name == "GlobalAvgPool":
                assert len(shape) == 3
                mods.append(Fn(lambda x: x.mean(dim=(2, 3))))
                shape = (shape[2],)
            elif name == "Flatten":
                if len(shape) == 3:  # NCHW -> NHWC so the flattened order is ntkit's
                    mods.append(Fn(lambda x: x.permute(0, 2, 3, 1).flatten(1)))
                shape = (int(np.prod(shape)),)
            elif name == "LayerNorm":
                eps, C = float(kw.get("eps", args[0] if args else 1e-12)), shape[-1]
                if len(shape) == 3:
                    mods.append(Fn(lambda x, C=C, eps=eps:
                                   F.layer_norm(x.permute(0, 2, 3, 1), (C,), eps=eps).permute(0, 3, 1, 2)))
                else:
                    mods.append(Fn(lambda x, C=C, eps=eps: F.layer_norm(x, (C,), eps=eps)))
            elif name == "LeakyRelu":
                mods.append(torch.nn.LeakyReLU(float(kw.get("alpha", args[0] if args else 0.01))))
            else:
                mods.append({"Relu": torch.nn.ReLU, "Tanh": torch.nn.Tanh, "Sigmoid": torch.nn.Sigmoid,
                             "Gelu": torch.nn.GELU, "Identity": torch.nn.Identity,
                             "Abs": lambda: Fn(torch.abs), "Erf": lambda: Fn(torch.erf)}[name]())
        return mods, shape


def torch_forward(spec, params, x, dtype, defaults):
    net, out_shape = TorchBuilder(params, dtype, **defaults).build(parse_spec(spec), x.shape[1:])
    xt = torch.from_numpy(x)
    if xt.dim() == 4:
        xt = xt.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    with torch.no_grad():
        y = torch.nn.Sequential(*net)(xt)
    if y.dim() == 4:
        y = y.permute(0, 2, 3, 1)
    assert tuple(y.shape[1:]) == tuple(out_shape)
    return y.numpy()


def max_rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check(ntk, tmp_path, spec, input_shape, dtype, seed=0, defaults=STANDARD, tol=None, edit_params=None):
    """ntk init + ntk apply vs the PyTorch build of spec; returns the max relative error."""
    params_path = ntk_init(ntk, tmp_path, spec, input_shape, dtype, seed, defaults)
    params = dict(np.load(params_path))
    for key, value in params.items():
        assert value.dtype == np.dtype(dtype), f"{key} is {value.dtype}, asked for {dtype}"
    if edit_params:
        params = edit_params(params)
        params_path = tmp_path / "edited.npz"
        np.savez(params_path, **params)
    x = np.random.default_rng(seed + 1).standard_normal((N, *input_shape)).astype(dtype)
    y = ntk_apply(ntk, tmp_path, spec, params_path, x, dtype, defaults)
    y_ref = torch_forward(spec, params, x, dtype, defaults)
    assert y.dtype == np.dtype(dtype)
    assert y.shape == y_ref.shape
    assert np.all(np.isfinite(y))
    err = max_rel_err(y, y_ref)
    assert err <= (tol or TOL[dtype]), f"{spec} ({dtype}): max relative error {err:.3g}"
    return err


# ---------------------------------------------------------------------------------------------
# The peer's networks (standard parameterization, network-wide)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [64, 512])
def test_peer_mlp(ntk_bin, tmp_path, width, dtype):
    check(ntk_bin, tmp_path, MLP.format(W=width), (784,), dtype, seed=width)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [16, 64])
def test_peer_cnn(ntk_bin, tmp_path, width, dtype):
    check(ntk_bin, tmp_path, CNN.format(W=width), (28, 28, 1), dtype, seed=width)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_numpy_written_params_with_biases(ntk_bin, tmp_path, arch, dtype):
    """b_std=0 gives all-zero biases; overwrite them (and write the file with np.savez) so the
    bias path and NumPy-written parameter files are exercised too."""
    rng = np.random.default_rng(7)

    def random_biases(params):
        return {k: (rng.standard_normal(v.shape) * 0.5).astype(v.dtype) if k.endswith(".b") else v
                for k, v in params.items()}

    spec, shape = (MLP.format(W=64), (784,)) if arch == "mlp" else (CNN.format(W=16), (28, 28, 1))
    check(ntk_bin, tmp_path, spec, shape, dtype, edit_params=random_biases)


# ---------------------------------------------------------------------------------------------
# NTK parameterization: same function as standard parameterization with rescaled weights


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_ntk_parameterization(ntk_bin, tmp_path, arch, dtype):
    if arch == "mlp":
        spec = "Dense(128, W_std=1.5, b_std=0.1), Relu, Dense(64, W_std=2, b_std=0.3), Tanh, Dense(10)"
        shape = (784,)
    else:
        spec = ("Conv(16, 3, padding=SAME, W_std=1.4, b_std=0.2), Relu, Conv(8, 3x5, stride=2, b_std=0.05), "
                "Relu, GlobalAvgPool, Dense(10, W_std=0.5, b_std=1)")
        shape = (28, 28, 3)
    # The default parameterization is ntk; also give a network-wide W_std that layers override.
    check(ntk_bin, tmp_path, spec, shape, dtype, seed=3, defaults={"W_std": 1.2})


def test_network_wide_defaults(ntk_bin, tmp_path):
    """--W-std / --b-std apply to layers that give none; a layer's own argument wins."""
    spec = "Dense(64), Erf, Dense(32, W_std=0.7, b_std=none), Relu, Dense(10, parameterization=standard)"
    check(ntk_bin, tmp_path, spec, (20,), "float64", seed=5,
          defaults={"W_std": 1.7, "b_std": 0.4, "parameterization": "ntk"})


# ---------------------------------------------------------------------------------------------
# Convolution geometry, pooling and flatten order


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_valid_rect_cnn(ntk_bin, tmp_path, dtype):
    # 28x28x1 -> Conv 3x5 stride 2 VALID: 13x12x8 -> Conv 2x3 stride 1x2 SAME (asymmetric padding
    # with the extra pixel after): 13x6x6 -> AvgPool(2): 6x3x6 -> Flatten (NHWC order) -> Dense.
    spec = ("Conv(8, 3x5, stride=2, padding=VALID, b_std=0.1), Relu, "
            "Conv(6, 2x3, stride=1x2, padding=SAME, b_std=0.1), Gelu, AvgPool(2), Flatten, Dense(10, b_std=0.1)")
    check(ntk_bin, tmp_path, spec, (28, 28, 1), dtype, seed=11)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("defaults", [STANDARD, {"W_std": 1.3}], ids=["standard", "ntk"])
def test_integer_padding_stride2(ntk_bin, tmp_path, dtype, defaults):
    # PyTorch's integer padding (p zeros on each side), as a ResNet writes it, against
    # nn.Conv2d(padding=p) and nn.AvgPool2d(padding=p): 29x30x3 -> Conv 7x7 stride 2 padding 3:
    # 15x15x8 (SAME would put 2 zero columns before the 30 wide image, not 3) -> AvgPool 3 stride 2
    # padding 1 (zeros counted): 8x8x8 -> Conv 3x3 stride 2 padding 1: 4x4x6 -> Conv 3x5 padding
    # 1x2: 4x4x6 -> Conv 2x2 padding 1 (an even kernel: the image grows): 5x5x4 -> Flatten -> Dense.
    spec = ("Conv(8, 7, stride=2, padding=3, b_std=0.1), Relu, AvgPool(3, stride=2, padding=1), "
            "Conv(6, 3, stride=2, padding=1, b_std=0.2), Gelu, Conv(6, 3x5, padding=1x2), Tanh, "
            "Conv(4, 2, padding=1, b_std=0.1), Relu, Flatten, Dense(10, b_std=0.1)")
    check(ntk_bin, tmp_path, spec, (29, 30, 3), dtype, seed=13, defaults=defaults)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multichannel_pooling(ntk_bin, tmp_path, dtype):
    spec = ("Conv(5, 3, b_std=0.1), Abs, AvgPool(3, stride=2, padding=SAME), Conv(7, 1), Sigmoid, "
            "AvgPool(2x3, stride=1), Flatten, Dense(10)")
    check(ntk_bin, tmp_path, spec, (15, 17, 3), dtype, seed=12)


# ---------------------------------------------------------------------------------------------
# Activations, LayerNorm, Residual


ACTIVATIONS = ["Relu", "Tanh", "Gelu", "Sigmoid", "Erf", "LeakyRelu(0.1)", "Abs", "Identity"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_mlp(ntk_bin, tmp_path, act, dtype):
    spec = f"Dense(64, W_std=2, b_std=0.5), {act}, Dense(64, W_std=2, b_std=0.5), {act}, Dense(10, b_std=0.5)"
    check(ntk_bin, tmp_path, spec, (784,), dtype, seed=21)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm(ntk_bin, tmp_path, dtype):
    check(ntk_bin, tmp_path, "Dense(32), LayerNorm, Relu, Dense(10)", (784,), dtype, seed=31)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_eps_and_images(ntk_bin, tmp_path, dtype):
    spec = ("Conv(8, 3, padding=SAME, b_std=0.1), LayerNorm(eps=0.5), Relu, Conv(4, 3), LayerNorm, "
            "GlobalAvgPool, Dense(10)")
    check(ntk_bin, tmp_path, spec, (10, 9, 2), dtype, seed=32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual(ntk_bin, tmp_path, dtype):
    spec = "Dense(64, b_std=0), Residual(Relu, Dense(64, b_std=0)), Relu, Dense(10, b_std=0)"
    check(ntk_bin, tmp_path, spec, (784,), dtype, seed=41)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nested_residual_cnn(ntk_bin, tmp_path, dtype):
    spec = ("Conv(8, 3, padding=SAME, b_std=0.1), Residual(Relu, Conv(8, 3, padding=SAME), "
            "Residual(Tanh, Conv(8, 1, b_std=0.2))), Relu, AvgPool(2), Flatten, Dense(10)")
    check(ntk_bin, tmp_path, spec, (12, 12, 2), dtype, seed=42)
