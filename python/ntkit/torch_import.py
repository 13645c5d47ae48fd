"""PyTorch models into ntkit: `net, params = ntkit.from_torch(module, input_shape)`.

What is read (standard parameterization, the weights as they are, so the network computes exactly
what the module computes):

    nn.Sequential (nested too)         the layers in order
    nn.Linear                          Dense(out), W = weight.T, b = bias
    nn.Conv2d                          Conv(out, (kh, kw), stride, padding), W = weight in HWIO
                                       (groups = dilation = 1, zero padding)
    nn.ReLU, LeakyReLU, Tanh, Sigmoid, GELU (exact erf form)
    nn.AvgPool2d                       AvgPool (count_include_pad=True, no ceil_mode)
    nn.MaxPool2d                       MaxPool (dilation 1, no ceil_mode)
    nn.BatchNorm1d / 2d (eval)         BatchNorm with the running statistics (γ, β trainable; μ, σ² frozen)
    torchvision ResNet, BasicBlock,    the stem, Residual(block..., shortcut=[downsample...]), Relu per
      Bottleneck (resnet18/34/50...)   block, GlobalAvgPool, Dense: any num_classes or first conv
    nn.AdaptiveAvgPool2d(1)            GlobalAvgPool
    nn.Flatten                         Flatten (the next Linear's input rows are permuted from
                                       PyTorch's (C, H, W) order to ntkit's (H, W, C))
    nn.Identity, nn.Dropout (eval)     nothing
    ntkit.torch_import.Residual        Residual(block): x + block(x)

Inputs: ntkit takes images as NHWC, PyTorch as NCHW; input_shape is ntkit's per-example shape,
(H, W, C) or (d,). Anything else (a custom forward, BatchNorm or Dropout in training mode)
is refused with NotImplementedError naming the module and its path in the model.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .network import Network

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("ntkit.from_torch needs PyTorch (pip install torch)") from e


class Residual(nn.Module):
    """x + block(x), the residual block ntkit's spec writes Residual(...). Build residual networks
    with it (its block an nn.Sequential or a single layer) to import them with from_torch."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.block = layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x)


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _size(p: Tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _refuse(path: str, module: nn.Module, why: str = ""):
    raise NotImplementedError(
        f"from_torch: module '{path}' ({type(module).__name__}) {why or 'is not supported'}; supported: Sequential, "
        "Linear, Conv2d, ReLU, LeakyReLU, Tanh, Sigmoid, GELU, AvgPool2d, MaxPool2d, BatchNorm1d/2d (eval mode), "
        "AdaptiveAvgPool2d(1), Flatten, Identity, "
        "Dropout (eval mode) and ntkit.torch_import.Residual")


def _window_spec(layer: str, m) -> str:
    """AvgPool / MaxPool with a pooling module's window, stride and padding."""
    k, s, p = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size), _pair(m.padding)
    return f"{layer}({_size(k)}, stride={_size(s)}, padding={'VALID' if p == (0, 0) else _size(p)})"


def _torchvision(m, name: str) -> bool:
    """m is torchvision.models.resnet's class `name` itself (its forward is known), not a look-alike."""
    return type(m).__name__ == name and type(m).__module__.startswith("torchvision.models")


def _resnet_layers(m) -> List[Tuple[str, object]]:
    """torchvision's ResNet.forward as a layer list: the stem, the four stages, pooling, the classifier."""
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
    return [(n, getattr(m, n)) for n in names] + [("flatten", nn.Flatten()), ("fc", m.fc)]


def _resnet_block(m):
    """(main path, shortcut) of torchvision's BasicBlock / Bottleneck: relu(main(x) + shortcut(x)),
    the shortcut its `downsample` (None: the identity)."""
    if _torchvision(m, "BasicBlock"):
        main = ["conv1", "bn1", "relu", "conv2", "bn2"]
    elif _torchvision(m, "Bottleneck"):
        main = ["conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3"]
    else:
        return None
    if m.downsample is None:
        shortcut = None
    elif isinstance(m.downsample, nn.Sequential):
        shortcut = list(m.downsample.named_children())
    else:
        shortcut = [("", m.downsample)]
    return [(n, getattr(m, n)) for n in main], shortcut


class _Converter:
    def __init__(self, dtype):
        self.dtype = dtype
        self.params: Dict[str, np.ndarray] = {}
        # ntkit's activation is a vector while PyTorch's is still (N, C, 1, 1): after global pooling.
        self.pooled = False

    def array(self, t) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy().astype(self.dtype, copy=False))

    def walk(self, modules: Sequence[Tuple[str, nn.Module]], x, prefix: str, permute,
             layers: List[str]) -> Tuple[object, object]:
        """Appends to `layers` the specs of `modules` applied to the example tensor x (NCHW / (N, d)),
        their parameters stored under prefix + the layer's index. permute: pending row order of the
        next Linear's input (from a Flatten of an image), or None. Returns (x, permute) after them."""
        for path, m in modules:
            key = f"{prefix}{len(layers)}"
            spec = None
            if _torchvision(m, "ResNet"):
                x, permute = self.walk([(f"{path}.{n}" if path else n, c) for n, c in _resnet_layers(m)], x, prefix,
                                       permute, layers)
                continue
            block = _resnet_block(m)
            if block is not None:
                if permute is not None or self.pooled:
                    _refuse(path, m, "follows a Flatten or global pooling")
                main, shortcut = block
                sub: List[str] = []
                self.walk([(f"{path}.{n}", c) for n, c in main], x, f"{key}.", None, sub)
                short: List[str] = []
                if shortcut is not None:
                    self.walk([(f"{path}.downsample.{n}" if n else f"{path}.downsample", c) for n, c in shortcut], x,
                              f"{key}.shortcut.", None, short)
                layers.append(f"Residual({', '.join(sub)}" + (f", shortcut=[{', '.join(short)}]" if short else "") + ")")
                layers.append("Relu")  # after the sum
                x = m(x)
                continue
            if isinstance(m, nn.Sequential):
                # Nested Sequentials are inlined: their layers continue this list's numbering.
                x, permute = self.walk([(f"{path}.{n}", c) for n, c in m.named_children()], x, prefix, permute, layers)
                continue
            if isinstance(m, (nn.Identity,)):
                x = m(x)
                continue
            if isinstance(m, nn.Dropout):
                if m.training:
                    _refuse(path, m, "is in training mode (random); call module.eval() first")
                x = m(x)
                continue
            if isinstance(m, nn.Linear):
                if x.dim() == 4:
                    _refuse(path, m, "is applied to an image (PyTorch applies it along the width axis); flatten first")
                w = self.array(m.weight).T  # (in, out)
                if permute is not None:
                    w = w[permute]
                    permute = None
                self.params[f"{key}.W"] = np.ascontiguousarray(w)
                spec = f"Dense({m.out_features}" + (", b_std=0" if m.bias is not None else "") + ")"
                if m.bias is not None:
                    self.params[f"{key}.b"] = self.array(m.bias)
            elif isinstance(m, nn.Conv2d):
                if m.groups != 1 or _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros":
                    _refuse(path, m, "has groups, dilation or a padding mode other than zeros (not supported)")
                if permute is not None or self.pooled:
                    _refuse(path, m, "follows a Flatten or global pooling")
                kh, kw = _pair(m.kernel_size)
                stride = _pair(m.stride)
                if isinstance(m.padding, str):
                    padding = m.padding.upper()  # 'same' (stride 1, extra pixel after as TensorFlow) / 'valid'
                else:
                    pad = _pair(m.padding)
                    if pad == (0, 0):
                        padding = "VALID"
                    elif stride == (1, 1) and (2 * pad[0], 2 * pad[1]) == (kh - 1, kw - 1):
                        padding = "SAME"  # the same pixels as PyTorch's symmetric padding
                    else:
                        padding = _size(pad)
                self.params[f"{key}.W"] = self.array(m.weight).transpose(2, 3, 1, 0).copy()  # OIHW -> HWIO
                spec = (f"Conv({m.out_channels}, {_size((kh, kw))}, stride={_size(stride)}, padding={padding}"
                        + (", b_std=0" if m.bias is not None else "") + ")")
                if m.bias is not None:
                    self.params[f"{key}.b"] = self.array(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if m.training:
                    _refuse(path, m, "is in training mode (batch statistics); call module.eval() first")
                if not m.affine or m.running_mean is None or m.running_var is None:
                    _refuse(path, m, "has no affine parameters or no running statistics (not supported)")
                if x.dim() != (4 if isinstance(m, nn.BatchNorm2d) else 2):
                    _refuse(path, m, f"gets a {x.dim()}-D input (BatchNorm1d takes (N, C), BatchNorm2d (N, C, H, W))")
                if permute is not None:
                    _refuse(path, m, "stands between a Flatten and the next Linear (not supported)")
                for name, t in (("gamma", m.weight), ("beta", m.bias), ("mean", m.running_mean), ("var", m.running_var)):
                    self.params[f"{key}.{name}"] = self.array(t)
                spec = f"BatchNorm(eps={m.eps!r})"
            elif isinstance(m, nn.ReLU):
                spec = "Relu"
            elif isinstance(m, nn.LeakyReLU):
                spec = f"LeakyRelu({m.negative_slope!r})"
            elif isinstance(m, nn.Tanh):
                spec = "Tanh"
            elif isinstance(m, nn.Sigmoid):
                spec = "Sigmoid"
            elif isinstance(m, nn.GELU):
                if getattr(m, "approximate", "none") != "none":
                    _refuse(path, m, "uses the tanh approximation (ntkit's Gelu is the exact erf form)")
                spec = "Gelu"
            elif isinstance(m, nn.AvgPool2d):
                if self.pooled:
                    _refuse(path, m, "follows global pooling")
                if m.ceil_mode or not m.count_include_pad or m.divisor_override is not None:
                    _refuse(path, m, "has ceil_mode, count_include_pad=False or divisor_override (not supported)")
                spec = _window_spec("AvgPool", m)
            elif isinstance(m, nn.MaxPool2d):
                if self.pooled:
                    _refuse(path, m, "follows global pooling")
                if m.ceil_mode or _pair(m.dilation) != (1, 1) or m.return_indices:
                    _refuse(path, m, "has ceil_mode, dilation or return_indices (not supported)")
                spec = _window_spec("MaxPool", m)
            elif isinstance(m, nn.AdaptiveAvgPool2d):
                if _pair(m.output_size) != (1, 1):
                    _refuse(path, m, "has an output size other than 1 (only global average pooling is supported)")
                spec = "GlobalAvgPool"
                self.pooled = True
            elif isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    _refuse(path, m, "flattens other axes than 1..-1")
                if x.dim() != 4 or self.pooled:
                    # A vector already, or (N, C, 1, 1) after global pooling, which ntkit's
                    # GlobalAvgPool already gave as (N, C): nothing to do.
                    self.pooled = False
                    x = m(x)
                    continue
                c, h, w = x.shape[1:]
                if h * w > 1:
                    # ntkit's flattened index (i, j, k) of (H, W, C) reads PyTorch's c*H*W + i*W + j.
                    permute = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
                spec = "Flatten"
            elif isinstance(m, Residual):
                if permute is not None:
                    _refuse(path, m, "stands between a Flatten and the next Linear (not supported)")
                children = list(m.block.named_children()) if isinstance(m.block, nn.Sequential) else [("", m.block)]
                block_prefix = f"{key}."
                sub: List[str] = []
                _, inner_permute = self.walk(
                    [(f"{path}.block.{n}" if n else f"{path}.block", c) for n, c in children], x, block_prefix, None, sub)
                if inner_permute is not None:
                    _refuse(path, m, "ends with a Flatten inside the residual block")
                spec = f"Residual({', '.join(sub)})"
            else:
                _refuse(path, m)
            x = m(x)
            if spec is not None:
                layers.append(spec)
        return x, permute


def from_torch(module: "nn.Module", input_shape: Sequence[int], *, dtype=None) -> Tuple[Network, Dict[str, np.ndarray]]:
    """(Network, params) computing what `module` computes, with its current weights.

    input_shape: ntkit's per-example shape, (d,) for vectors or (H, W, C) for images (the module
    sees (C, H, W)). dtype: of the parameters, default the module's (float32 or float64).
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"input_shape must be (d,) or (H, W, C), got {shape}")
    first = next(module.parameters(), None)
    torch_dtype = first.dtype if first is not None else torch.float32
    if dtype is None:
        dtype = np.float64 if torch_dtype == torch.float64 else np.float32
    example = torch.zeros((1,) + (shape if len(shape) == 1 else (shape[2], shape[0], shape[1])), dtype=torch_dtype)
    conv = _Converter(np.dtype(dtype))
    root = [(n, c) for n, c in module.named_children()] if isinstance(module, nn.Sequential) else [("", module)]
    with torch.no_grad():
        layers: List[str] = []
        _, permute = conv.walk([(n or type(module).__name__, c) for n, c in root], example, "", None, layers)
    if permute is not None:
        raise NotImplementedError("from_torch: the model ends with a Flatten of an image; ntkit's outputs would be "
                                  "in (H, W, C) order, not PyTorch's (C, H, W)")
    if not layers:
        raise ValueError("from_torch: the module has no layers")
    net = Network(", ".join(layers), shape, parameterization="standard")
    expected = {k: tuple(v) for k, v in net.param_shapes.items()}
    got = {k: tuple(v.shape) for k, v in conv.params.items()}
    if expected != got:  # a converter bug, not a user error
        raise RuntimeError(f"from_torch: parameters {got} do not match the network's {expected}")
    return net, conv.params
