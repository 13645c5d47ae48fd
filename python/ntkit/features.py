"""Random feature maps whose inner products approximate NTKs (Zandieh et al., NeurIPS 2021), with
scikit-learn's fit / transform.

    NTKSketch   the NTK of [Dense(k, W_std=√2), Relu] × depth, Dense(k)  (vectors)
    NTKRF       the same kernel by arc-cosine random features
    CNTKSketch  the CNTK-GAP of [Conv(k, filter, W_std=√2), Relu] × depth, GlobalAvgPool, Dense(k)  (images NHWC)
    GradientFeatures  a finite network's gradients, projected: F Fᵀ ≈ its empirical NTK (pNTK / logit)

Each map is a fixed random function of (random_state, its settings, the input dimension): fit only
records and checks the input shape, and transform gives any row the same features whatever the
batch, so fit on the training set and transform the test set separately, as with any scikit-learn
transformer. The features equal `ntk features` with the same settings, bit for bit.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _core
from ._util import Progress, as_bytes, as_input, check_choice, output_path, progress_reporter
from .network import Network, Params, param_source

# Every setting the C++ feature job reads, with the CLI's defaults.
_JOB_DEFAULTS: Dict[str, Any] = dict(
    depth=1, dim=4096, degree=0, layerwise=False, filter=3, padding="SAME", poly_dim=0, relu_dim=0, step_dim=0,
    leverage=True, shared_projection=True, seed=0, transform=None, flatten=False, spec="", W_std=1.0, b_std=None,
    parameterization="ntk", init_seed=None, mode="pntk", projection="srht", dtype="float32", threads=0, max_memory=0)


class _FeatureMap:
    _sketch = ""
    # The constructor arguments (scikit-learn's get_params) and the job settings they become.
    _param_names: tuple = ()

    def _settings(self) -> Dict[str, Any]:
        s = dict(_JOB_DEFAULTS)
        s.update(sketch=self._sketch, dim=int(self.n_components), seed=_random_state(self.random_state),
                 dtype=self.dtype, threads=int(self.threads), max_memory=as_bytes(self.max_memory))
        check_choice("dtype", self.dtype, ("float32", "float64"))
        transform = getattr(self, "srht_transform", None)
        if transform is not None:
            check_choice("srht_transform", transform, ("fourier", "hadamard"))
        s["transform"] = transform
        return s

    # scikit-learn estimator protocol (no dependency on scikit-learn).
    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self._param_names:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; it has {', '.join(self._param_names)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        # As scikit-learn: the arguments that differ from their defaults.
        defaults = {k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items()}
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if k not in defaults or defaults[k] is inspect.Parameter.empty or defaults[k] != v)
        return f"{type(self).__name__}({args})"

    def _check_rows(self, X, name: str):
        X = as_input(X, name, allow_int=True)  # integers as the CLI reads an integer .npy
        if isinstance(X, str):
            return X, None
        if X.ndim < 2:
            raise ValueError(f"{name} has shape {X.shape}; give examples along the first axis")
        return X, tuple(X.shape[1:])

    def fit(self, X, y=None):
        """Records the per-example input shape (the map itself is fixed by random_state)."""
        _, shape = self._check_rows(X, "X")
        self._settings()  # every setting checked now, not at transform time
        self.input_shape_ = shape
        self.n_features_in_ = None if shape is None else int(np.prod(shape))
        return self

    def transform(self, X, *, out: Union[None, str, "os.PathLike[str]"] = None, progress: Progress = None,
                  params: Optional[Params] = None, resume: bool = False) -> np.ndarray:
        """Features (N, n_components) of X; with out='F.npy' written there batch by batch and
        memory-mapped. resume=True continues an interrupted transform into the same file from its
        checkpoint (out + '.ntk-checkpoint')."""
        if resume and out is None:
            raise ValueError("resume=True continues the output file of an interrupted run: give its out='F.npy'")
        if not hasattr(self, "input_shape_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")
        X, shape = self._check_rows(X, "X")
        if shape is not None and self.input_shape_ is not None and shape != self.input_shape_:
            raise ValueError(f"X has examples of shape {shape}; this map was fitted on {self.input_shape_}")
        p = None
        s = self._settings()
        if params is not None:
            p, s["init_seed"] = param_source(params)
        with progress_reporter(progress, self._sketch, "rows") as cb:
            array = _core.features(s, X, p, cb, output_path(out), resume)
        return array if array is not None else np.load(os.fspath(out), mmap_mode="r")

    def fit_transform(self, X, y=None, **kwargs) -> np.ndarray:
        return self.fit(X).transform(X, **kwargs)


def _random_state(r) -> int:
    if r is None:
        return 0
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
        raise ValueError(f"random_state must be an int >= 0 (the map's seed), got {r!r}")
    return int(r)


class NTKSketch(_FeatureMap):
    """NTKSketch (Zandieh et al., Algorithm 1 / the one-pass variant): F Fᵀ ≈ the NTK of
    [Dense(k, W_std=√2), Relu] × depth, Dense(k) in neural-tangents' convention, for vectors (N, d).

    degree: of the polynomial fitted to the NTK function (a power of two; 0: 8, or 2 when
    layerwise); poly_dim: PolySketch width (0: n_components / 4); srht_transform: 'fourier'
    (default) or 'hadamard' (the CLI's --transform)."""

    _sketch = "ntk"
    _param_names = ("n_components", "depth", "degree", "layerwise", "poly_dim", "srht_transform", "flatten",
                    "random_state", "dtype", "threads", "max_memory")

    def __init__(self, n_components: int = 4096, *, depth: int = 1, degree: int = 0, layerwise: bool = False,
                 poly_dim: int = 0, srht_transform: Optional[str] = None, flatten: bool = False, random_state: int = 0,
                 dtype: str = "float32", threads: int = 0, max_memory: Union[None, int, str] = None):
        self.n_components, self.depth, self.degree, self.layerwise = n_components, depth, degree, layerwise
        self.poly_dim, self.srht_transform, self.flatten = poly_dim, srht_transform, flatten
        self.random_state, self.dtype, self.threads, self.max_memory = random_state, dtype, threads, max_memory

    def _settings(self):
        s = super()._settings()
        s.update(depth=int(self.depth), degree=int(self.degree), layerwise=bool(self.layerwise),
                 poly_dim=int(self.poly_dim), flatten=bool(self.flatten))
        return s


class NTKRF(_FeatureMap):
    """NTKRF (Zandieh et al.): arc-cosine random features with leverage-score sampling for the same
    kernel as NTKSketch. relu_dim / step_dim: order-1 / order-0 features per layer (0: n_components
    / 2, relu_dim); leverage=False samples plain Gaussians; shared_projection=False draws the step
    features' projections apart (the paper's map); srht_transform default 'hadamard'."""

    _sketch = "ntkrf"
    _param_names = ("n_components", "depth", "relu_dim", "step_dim", "leverage", "shared_projection", "srht_transform",
                    "flatten", "random_state", "dtype", "threads", "max_memory")

    def __init__(self, n_components: int = 4096, *, depth: int = 1, relu_dim: int = 0, step_dim: int = 0,
                 leverage: bool = True, shared_projection: bool = True, srht_transform: Optional[str] = None,
                 flatten: bool = False, random_state: int = 0, dtype: str = "float32", threads: int = 0,
                 max_memory: Union[None, int, str] = None):
        self.n_components, self.depth, self.relu_dim, self.step_dim = n_components, depth, relu_dim, step_dim
        self.leverage, self.shared_projection, self.srht_transform, self.flatten = (
            leverage, shared_projection, srht_transform, flatten)
        self.random_state, self.dtype, self.threads, self.max_memory = random_state, dtype, threads, max_memory

    def _settings(self):
        s = super()._settings()
        s.update(depth=int(self.depth), relu_dim=int(self.relu_dim), step_dim=int(self.step_dim),
                 leverage=bool(self.leverage), shared_projection=bool(self.shared_projection), flatten=bool(self.flatten))
        return s


class CNTKSketch(_FeatureMap):
    """CNTKSketch (Zandieh et al.): F Fᵀ ≈ the CNTK with global average pooling of
    [Conv(k, filter, padding, W_std=√2), Relu] × depth, GlobalAvgPool, Dense(k), for images
    (N, H, W, C). degree: of the polynomials (0: 2); srht_transform default 'hadamard'."""

    _sketch = "cntk"
    _param_names = ("n_components", "depth", "degree", "filter", "padding", "srht_transform", "random_state", "dtype",
                    "threads", "max_memory")

    def __init__(self, n_components: int = 4096, *, depth: int = 1, degree: int = 0, filter: int = 3,
                 padding: str = "SAME", srht_transform: Optional[str] = None, random_state: int = 0,
                 dtype: str = "float32", threads: int = 0, max_memory: Union[None, int, str] = None):
        self.n_components, self.depth, self.degree, self.filter, self.padding = n_components, depth, degree, filter, padding
        self.srht_transform, self.random_state, self.dtype, self.threads, self.max_memory = (
            srht_transform, random_state, dtype, threads, max_memory)

    def _settings(self):
        s = super()._settings()
        check_choice("padding", self.padding, ("SAME", "VALID"))
        s.update(depth=int(self.depth), degree=int(self.degree), filter=int(self.filter), padding=self.padding)
        return s


class GradientFeatures(_FeatureMap):
    """A finite network's gradient features: the per-example gradient of its pNTK (sum of logits) or
    of one logit, projected to n_components by an SRHT (or 'hadamard' / 'countsketch'), so that
    F Fᵀ ≈ its empirical kernel in that mode. The parameters are given to transform(X, params=...)
    (a dict, a .npz path or an int seed)."""

    _sketch = "gradient"
    _param_names = ("net", "n_components", "mode", "projection", "random_state", "dtype", "threads", "max_memory")

    def __init__(self, net: Network, n_components: int = 4096, *, mode: str = "pntk", projection: str = "srht",
                 random_state: int = 0, dtype: str = "float32", threads: int = 0,
                 max_memory: Union[None, int, str] = None):
        self.net, self.n_components, self.mode, self.projection = net, n_components, mode, projection
        self.random_state, self.dtype, self.threads, self.max_memory = random_state, dtype, threads, max_memory

    def _settings(self):
        if not isinstance(self.net, Network):
            raise ValueError(f"net must be an ntkit.Network, got {type(self.net).__name__}")
        s = super()._settings()
        spec, W_std, b_std, parameterization = self.net._args()
        check_choice("projection", self.projection, ("srht", "hadamard", "countsketch"))
        s.update(spec=spec, W_std=W_std, b_std=b_std, parameterization=parameterization, mode=self.mode,
                 projection=self.projection)
        return s

    def transform(self, X, *, params: Params, out=None, progress: Progress = None) -> np.ndarray:  # type: ignore[override]
        return super().transform(X, out=out, progress=progress, params=params)
