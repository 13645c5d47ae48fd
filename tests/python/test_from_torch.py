"""ntkit.from_torch against PyTorch itself, on models with random weights drawn by PyTorch (not
ntkit's initialization): an MLP, a CNN with GELU, LeakyReLU, Sigmoid, integer / 'same' / stride-2
padding, AvgPool2d, AdaptiveAvgPool2d(1), a CNN whose Flatten feeds a Linear (the (C, H, W) ->
(H, W, C) row permutation), a residual CNN (ntkit.torch_import.Residual), the ResNet stem
with MaxPool2d, and a ResNet stage with BatchNorm (eval mode, non-trivial running statistics).

  apply           = the module's forward (inputs NHWC for ntkit, NCHW for torch)
  empirical_ntk   = functorch's Jacobian contraction (vmap(jacrev), then einsum) for modes full,
                    trace (mean over outputs) and pntk ((1/O) Σ_jk Θ_jk, REFERENCE.md)

Metric: max|a - b| / max|b|; at most 1e-5 in float32 and 1e-10 in float64. Unsupported modules are
refused with NotImplementedError naming the module's path.
"""
import numpy as np
import pytest

import ntkit

torch = pytest.importorskip("torch")
nn = torch.nn
functorch = pytest.importorskip("functorch")
from ntkit.torch_import import Residual  # noqa: E402  (needs torch)

TOL = {"float32": 1e-5, "float64": 1e-10}
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def mlp():
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 16), nn.Tanh(),
                         nn.Sequential(nn.Dropout(0.3), nn.Linear(16, 5)))


def cnn():
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.GELU(),
        nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
        nn.Conv2d(6, 6, (3, 1), padding="same"), nn.Sigmoid(),
        nn.AvgPool2d(2), nn.Identity(),
        nn.Conv2d(6, 8, 3, padding="valid", bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def flatten_cnn():
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 6), nn.ReLU(),
                         nn.Linear(6, 3))


def residual_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        Residual(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1)), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(6, 6, 1), nn.Tanh())),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(6, 3))


def flatten_1x1():
    """A Flatten of a 1 x 1 map that global pooling did not make: still a Flatten in ntkit."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4, 3))


def maxpool_stem():
    """torchvision's ResNet stem (7 x 7 stride-2 convolution, 3 x 3 stride-2 max pool, both padded)
    and a plain max pool with a rectangular window."""
    return nn.Sequential(nn.Conv2d(3, 4, 7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
                         Residual(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()), nn.MaxPool2d((2, 1)),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def batchnorm_resnet():
    """A ResNet stage as torchvision writes it, BatchNorm after each convolution (eval mode, with
    the running statistics set by make() to non-trivial values), and BatchNorm1d on a vector."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         Residual(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, eps=1e-3), nn.ReLU(),
                                  nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6), nn.BatchNorm1d(6),
                         nn.Tanh(), nn.Linear(6, 3))


MODELS = {"mlp": (mlp, (12,)), "cnn": (cnn, (14, 14, 3)), "flatten_cnn": (flatten_cnn, (8, 8, 2)),
          "residual_cnn": (residual_cnn, (8, 8, 3)), "flatten_1x1": (flatten_1x1, (3, 3, 1)),
          "maxpool_stem": (maxpool_stem, (13, 11, 3)), "batchnorm_resnet": (batchnorm_resnet, (7, 6, 3))}


def make(name, dtype):
    build, shape = MODELS[name]
    torch.manual_seed(7)
    model = build().to(TORCH_DTYPE[dtype]).eval()
    with torch.no_grad():  # "trained-looking" weights: not PyTorch's or ntkit's initialization scale
        for p in model.parameters():
            p.mul_(1.5).add_(0.05 * torch.randn_like(p))
        for m in model.modules():  # and running statistics as training leaves them (frozen: no derivative)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.5 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5,) + shape).astype(dtype)
    return model, shape, x


def to_torch(x):
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.permute(0, 3, 1, 2).contiguous() if t.dim() == 4 else t


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def functorch_entk(model, x):
    """(N, N, O, O) by Jacobian contraction, as the PyTorch NTK tutorial."""
    # Buffers (BatchNorm's running statistics) are inputs, not parameters: no derivative, as in ntkit.
    fmodel, params, buffers = functorch.make_functional_with_buffers(model)

    def f(params, xi):
        return fmodel(params, buffers, xi.unsqueeze(0)).squeeze(0)

    jac = functorch.vmap(functorch.jacrev(f), (None, 0))(params, to_torch(x))
    j = torch.cat([t.flatten(2) for t in jac], dim=2)  # (N, O, P)
    return torch.einsum("iap,jbp->ijab", j, j).detach().numpy().astype(np.float64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(MODELS))
def test_apply_and_entk_equal_torch(name, dtype):
    model, shape, x = make(name, dtype)
    net, params = ntkit.from_torch(model, shape)
    assert net.input_shape == shape
    assert all(p.dtype == np.dtype(dtype) for p in params.values())
    with torch.no_grad():
        ref = model(to_torch(x)).numpy().astype(np.float64)
    assert rel(net.apply(params, x), ref) <= TOL[dtype], net.spec

    full_ref = functorch_entk(model, x)
    o = full_ref.shape[-1]
    full = ntkit.empirical_ntk(net, params, x, mode="full")
    assert full.shape == full_ref.shape
    assert rel(full, full_ref) <= TOL[dtype]
    trace_ref = np.einsum("ijaa->ij", full_ref) / o
    pntk_ref = full_ref.sum(axis=(2, 3)) / o
    for method in ["jc", "vp", "sd"]:
        assert rel(ntkit.empirical_ntk(net, params, x, mode="trace", method=method), trace_ref) <= TOL[dtype], method
        assert rel(ntkit.empirical_ntk(net, params, x, mode="pntk", method=method), pntk_ref) <= TOL[dtype], method


def test_spec_reads_as_expected():
    net, params = ntkit.from_torch(flatten_cnn(), (8, 8, 2))
    assert net.spec == ("Conv(4, 3, stride=1, padding=VALID, b_std=0), Relu, Flatten, Dense(6, b_std=0), Relu, "
                        "Dense(3, b_std=0)")
    assert net.parameterization == "standard"
    assert sorted(params) == ["0.W", "0.b", "3.W", "3.b", "5.W", "5.b"]
    assert params["0.W"].shape == (3, 3, 2, 4)  # HWIO
    net, params = ntkit.from_torch(residual_cnn(), (8, 8, 3))
    assert "Residual(Conv(6, 3, stride=1, padding=SAME, b_std=0), Relu, Conv(6, 3, stride=1, padding=SAME, b_std=0))" \
        in net.spec
    assert "2.0.W" in params and "2.2.b" in params and "4.0.W" in params


class Custom(nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.mark.parametrize("model, path", [
    (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), "'1'.*training mode"),
    (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False).eval()), "'1'.*affine"),
    (nn.Sequential(nn.Linear(4, 4), nn.MaxPool2d(2, ceil_mode=True)), "'1'.*ceil_mode"),
    (nn.Sequential(nn.Linear(4, 4), nn.MaxPool2d(3, dilation=2)), "'1'.*dilation"),
    (nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), Custom())), "'1.1'"),
    (nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4)), "'1'.*LSTM"),
    (nn.Sequential(nn.Linear(4, 4), nn.GELU(approximate="tanh")), "tanh approximation"),
    (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), "training mode"),
])
def test_unsupported_modules_are_refused_by_path(model, path):
    if "training" not in path:
        model.eval()
    with pytest.raises(NotImplementedError, match=path):
        ntkit.from_torch(model, (4,))


@pytest.mark.parametrize("model, why", [
    # PyTorch applies a Linear to an image along its last (width) axis, ntkit's Dense along channels.
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.Linear(3, 2)), "'1'.*applied to an image"),
    # The Flatten's row permutation would have to pass through the block.
    (nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(), Residual(nn.Linear(18, 18)), nn.Linear(18, 3)),
     "'2'.*between a Flatten"),
    (nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Conv2d(2, 2, 1)), "'2'.*global pooling"),
])
def test_layouts_ntkit_would_compute_differently_are_refused(model, why):
    with pytest.raises(NotImplementedError, match=why):
        ntkit.from_torch(model.eval(), (3, 3, 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="torch.nn.Module"):
        ntkit.from_torch("Dense(3)", (4,))
    with pytest.raises(ValueError, match="input_shape"):
        ntkit.from_torch(mlp().eval(), (3, 4))


def random_statistics(model):
    """BatchNorm as training leaves it: γ, β and the running statistics off PyTorch's initial values."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))
                m.running_mean.copy_(0.2 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torchvision_resnet18(dtype):
    """torchvision's resnet18(num_classes=10) in eval mode, PyTorch's random weights and non-trivial
    BatchNorm statistics, 32 x 32 x 3 inputs: apply = forward, and the eNTK in full (O = 10), trace
    and pntk modes = functorch's Jacobian contraction (issue 15's acceptance, at N = 2)."""
    from torchvision.models import resnet18
    torch.manual_seed(3)
    model = random_statistics(resnet18(num_classes=10).to(TORCH_DTYPE[dtype]).eval())
    net, params = ntkit.from_torch(model, (32, 32, 3))
    assert net.num_params == sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    x = np.random.default_rng(4).standard_normal((2, 32, 32, 3)).astype(dtype)
    with torch.no_grad():
        ref = model(to_torch(x)).numpy().astype(np.float64)
    assert rel(net.apply(params, x), ref) <= TOL[dtype]
    full_ref = functorch_entk(model, x)
    assert rel(ntkit.empirical_ntk(net, params, x, mode="full"), full_ref) <= TOL[dtype]
    assert rel(ntkit.empirical_ntk(net, params, x, mode="trace"), np.einsum("ijaa->ij", full_ref) / 10) <= TOL[dtype]
    assert rel(ntkit.empirical_ntk(net, params, x, mode="pntk"), full_ref.sum(axis=(2, 3)) / 10) <= TOL[dtype]


def test_wide_cifar_resnet_from_torchvision_blocks():
    """A wide CIFAR-style ResNet (3 x 3 stem, no max pool, widened stages) written with torchvision's
    BasicBlock, projection shortcuts included: apply and the full eNTK equal PyTorch's in float64."""
    from torchvision.models.resnet import BasicBlock

    def shortcut(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    torch.manual_seed(7)
    k = 2  # widening factor
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          BasicBlock(16, 16 * k, downsample=shortcut(16, 16 * k, 1)),
                          BasicBlock(16 * k, 32 * k, stride=2, downsample=shortcut(16 * k, 32 * k, 2)),
                          BasicBlock(32 * k, 32 * k),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32 * k, 10))
    model = random_statistics(model.double().eval())
    net, params = ntkit.from_torch(model, (8, 8, 3))
    assert net.spec.count("shortcut=[") == 2
    x = np.random.default_rng(8).standard_normal((2, 8, 8, 3))
    with torch.no_grad():
        ref = model(to_torch(x)).numpy()
    assert rel(net.apply(params, x), ref) <= TOL["float64"]
    assert rel(ntkit.empirical_ntk(net, params, x, mode="full"), functorch_entk(model, x)) <= TOL["float64"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torchvision_resnet50_one_channel_pntk(dtype):
    """resnet50 (Bottleneck blocks) with its first convolution replaced for 1-channel images and 7
    classes: apply and the pNTK equal PyTorch's (functorch's Jacobian contraction)."""
    from torchvision.models import resnet50
    torch.manual_seed(5)
    model = resnet50(num_classes=7)
    model.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    model = random_statistics(model.to(TORCH_DTYPE[dtype]).eval())
    net, params = ntkit.from_torch(model, (28, 28, 1))
    x = np.random.default_rng(6).standard_normal((2, 28, 28, 1)).astype(dtype)
    with torch.no_grad():
        ref = model(to_torch(x)).numpy().astype(np.float64)
    assert rel(net.apply(params, x), ref) <= TOL[dtype]
    full_ref = functorch_entk(model, x)
    assert rel(ntkit.empirical_ntk(net, params, x, mode="pntk"), full_ref.sum(axis=(2, 3)) / 7) <= TOL[dtype]
