"""The demo's networks, written once as PyTorch modules: ntkit reads them with from_torch (standard
parameterization, PyTorch's initialization), functorch differentiates them as they are, and
neural-tangents gets the same layers as stax (nt_layers) with ntkit's parameter file."""
import torch
from torch import nn

OUTPUTS = 10  # Fashion-MNIST's classes: the readout width of every network here


def mlp(width: int, depth: int = 2) -> nn.Sequential:
    """Dense(width), Relu repeated `depth` times, then Dense(10), on flattened 28 x 28 images."""
    layers, fan_in = [], 784
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    return nn.Sequential(*layers, nn.Linear(fan_in, OUTPUTS))


def cnn(width: int) -> nn.Sequential:
    """Two 3 x 3 SAME convolutions with `width` channels, ReLU, global average pooling, Dense(10)."""
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, OUTPUTS))


def build(arch: str, width: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return {"mlp": mlp, "cnn": cnn}[arch](width)


INPUT_SHAPE = {"mlp": (784,), "cnn": (28, 28, 1)}


def nt_layers(arch: str, width: int):
    """The same network as neural-tangents stax layers for nt_worker.py, with the keys of ntkit's
    parameters ('<spec index>.W' / '.b', as from_torch names them)."""
    if arch == "mlp":
        return [{"type": "Dense", "out": width, "key": "0"}, {"type": "Relu"},
                {"type": "Dense", "out": width, "key": "2"}, {"type": "Relu"},
                {"type": "Dense", "out": OUTPUTS, "key": "4"}]
    conv = {"type": "Conv", "out": width, "filter": 3, "padding": "SAME"}
    return [dict(conv, key="0"), {"type": "Relu"}, dict(conv, key="2"), {"type": "Relu"}, {"type": "GlobalAvgPool"},
            {"type": "Dense", "out": OUTPUTS, "key": "5"}]


def to_torch_input(arch: str, x):
    """ntkit's layout (N, 784) or NHWC (N, 28, 28, 1) as PyTorch takes it (NCHW for images)."""
    t = torch.from_numpy(x)
    return t if arch == "mlp" else t.permute(0, 3, 1, 2).contiguous()
