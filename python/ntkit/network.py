"""ntkit.Network: a network spec at an input shape, its parameters and its forward pass."""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._util import as_input, check_choice

Params = Union[Dict[str, np.ndarray], str, "os.PathLike[str]", int]


class Network:
    """A network from a spec string, at a per-example input shape (NHWC order for images).

    Network('Dense(512), Relu, Dense(10)', input_shape=(784,)) or
    Network('Conv(32, 3, padding=SAME), Relu, GlobalAvgPool, Dense(10)', input_shape=(28, 28, 1)).

    W_std, b_std and parameterization are the network-wide defaults (the CLI's --W-std, --b-std,
    --parameterization); a layer's own argument wins. b_std=None means no biases.
    Parameters are dicts of arrays keyed '<path>.W' / '<path>.b' (the .npz layout of DESIGN.md).
    """

    def __init__(self, spec: str, input_shape: Sequence[int], *, W_std: float = 1.0, b_std: Optional[float] = None,
                 parameterization: str = "ntk"):
        if not isinstance(spec, str):
            raise ValueError(f"spec must be a string such as 'Dense(512), Relu, Dense(10)', got {type(spec).__name__}")
        check_choice("parameterization", parameterization, ("ntk", "standard"))
        shape = tuple(int(d) for d in (input_shape if isinstance(input_shape, (tuple, list)) else (input_shape,)))
        self.spec = spec
        self.input_shape: Tuple[int, ...] = shape
        self.W_std = float(W_std)
        self.b_std = None if b_std is None else float(b_std)
        self.parameterization = parameterization
        info = _core.network_info(spec, list(shape), self.W_std, self.b_std, parameterization)
        self.output_shape: Tuple[int, ...] = tuple(info["output_shape"])
        self.num_params: int = int(info["num_params"])
        self.param_shapes: Dict[str, Tuple[int, ...]] = {name: tuple(s) for name, s, _ in info["params"]}
        self._param_offsets: Dict[str, int] = {name: int(o) for name, _, o in info["params"]}
        self._describe: str = info["describe"]
        self._summary: str = info["summary"]

    # The arguments every job takes to rebuild this network.
    def _args(self):
        return self.spec, self.W_std, self.b_std, self.parameterization

    def summary(self) -> str:
        """One line per layer: shapes and parameter counts."""
        return self._summary

    def describe(self) -> str:
        """The spec with every argument spelled out."""
        return self._describe

    def __repr__(self) -> str:
        extra = ""
        if self.W_std != 1.0:
            extra += f", W_std={self.W_std:g}"
        if self.b_std is not None:
            extra += f", b_std={self.b_std:g}"
        if self.parameterization != "ntk":
            extra += f", parameterization={self.parameterization!r}"
        return f"Network({self.spec!r}, input_shape={self.input_shape}{extra})"

    def check_input(self, x, name: str):
        """x as a job takes it, checked to have this network's per-example shape."""
        x = as_input(x, name, allow_int=True)  # integers as the CLI reads an integer .npy
        if isinstance(x, np.ndarray) and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{name} has shape {x.shape}; the network takes (N, "
                             f"{', '.join(map(str, self.input_shape))}) (input_shape={self.input_shape})")
        return x

    def init(self, seed: int = 0, *, dtype: str = "float32", threads: int = 0) -> Dict[str, np.ndarray]:
        """Parameters drawn as `ntk init --seed` draws them (identical for a seed on any thread count).

        The arrays are named slices of one buffer laid out as the network's flat parameter vector,
        so that jobs given this dict (or the same arrays modified in place) read them where they
        are, without copying; a dict of other arrays is copied once per call."""
        check_choice("dtype", dtype, ("float32", "float64"))
        flat = _core.init(*self._args(), list(self.input_shape), _seed(seed), dtype, threads)
        return {name: flat[o:o + int(np.prod(shape, dtype=np.int64))].reshape(shape)
                for (name, shape), o in zip(self.param_shapes.items(), self._param_offsets.values())}

    def apply(self, params: Params, x, *, dtype: Optional[str] = None, threads: int = 0) -> np.ndarray:
        """Outputs (N, *output_shape) for inputs (N, *input_shape), as `ntk apply`.

        params: a dict of arrays, a .npz path, or an int seed (drawn as init(seed)). dtype: the
        compute type; None is float64 for float64 inputs, float32 otherwise.
        """
        p, seed = param_source(params)
        if dtype is not None:
            check_choice("dtype", dtype, ("float32", "float64"))
        return _core.apply(*self._args(), p, seed, self.check_input(x, "x"), dtype, threads)


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def param_source(params: Params):
    """(parameters, seed) as the jobs take them: a dict of arrays or a path, or an int seed."""
    if isinstance(params, (int, np.integer)) and not isinstance(params, bool):
        return None, _seed(params)
    if isinstance(params, (str, os.PathLike)):
        return os.fspath(params), None
    if isinstance(params, dict):
        out = {}
        for key, value in params.items():
            a = np.asarray(value)
            if a.dtype.kind != "f":
                raise ValueError(f"parameter {key!r} must be a float array, got dtype {a.dtype}")
            out[str(key)] = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")
                                                 if a.dtype.itemsize in (4, 8) else np.float64)
        return out, None
    raise ValueError("params must be a dict of arrays ('<path>.W' / '<path>.b'), a .npz path or an int seed, "
                     f"got {type(params).__name__}")
