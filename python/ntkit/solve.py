"""Methods that use kernels: kernel ridge regression (exact, Nyström, on features), linearized
gradient-descent dynamics and GP inference in neural-tangents' conventions, spectra, comparisons
and the pNTK report."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _core
from ._util import Progress, as_bytes, as_input, check_choice, optional_input, output_path, progress_reporter
from .network import Network, Params, param_source


def _float(v):
    """JSON numbers as the reports write them: "inf" / "nan" strings and null stand for non-finite."""
    if v is None:
        return math.nan
    return float(v) if isinstance(v, str) else v


@dataclass
class RegressionResult:
    """What `ntk regress --json` reports, with the predictions as arrays.

    predictions: test predictions (M, O), or (T, M, O) for several times; None without a test
    kernel. train_predictions: the in-sample outputs (N, O) / (T, N, O). metrics: one dict per time
    (time, train_mse, test_mse, train_accuracy, test_accuracy where defined). report: the whole
    JSON report (solver, ridge, lambda, ridge selection, warning, ...)."""

    predictions: Optional[np.ndarray] = field(repr=False)
    train_predictions: Optional[np.ndarray] = field(repr=False)
    metrics: List[Dict[str, float]]
    ridge: float
    solver: str
    warning: str
    report: Dict[str, Any] = field(repr=False)

    @property
    def test_accuracy(self) -> Optional[float]:
        """Test accuracy at the last time, with class labels and test targets."""
        return self.metrics[-1].get("test_accuracy")

    @property
    def test_mse(self) -> Optional[float]:
        return self.metrics[-1].get("test_mse")


def _times(t) -> List[float]:
    values = [t] if np.isscalar(t) or t is None else list(t)
    out = []
    for v in values:
        v = math.inf if v is None else float(v)
        if not (v >= 0):
            raise ValueError(f"times must be >= 0 or inf, got {v}")
        out.append(v)
    if not out:
        raise ValueError("give at least one time")
    return out


def _regress(settings: Dict[str, Any], progress: Progress) -> RegressionResult:
    s = dict(k_train=None, k_test=None, f_train=None, f_test=None, y_test=None, classes=0, ridge=0.0,
             ridge_absolute=False, validation=0, ridge_grid=[], times=[math.inf], learning_rate=1.0, centers=0,
             center_seed=0, max_iterations=100, tolerance=1e-7, max_memory=0, threads=0, output="", resume=False,
             checkpoint_seconds=60.0, batch_rows=0,
             center_indices=[])
    s.update(settings)
    if not (isinstance(s["checkpoint_seconds"], (int, float)) and s["checkpoint_seconds"] >= 0):
        raise ValueError(f"checkpoint_seconds must be a number >= 0, got {s['checkpoint_seconds']!r}")
    s["checkpoint_seconds"] = float(s["checkpoint_seconds"])
    if isinstance(s["ridge"], str):
        check_choice("ridge", s["ridge"], ("auto",))
    elif not (isinstance(s["ridge"], (int, float, np.floating, np.integer)) and s["ridge"] >= 0):
        raise ValueError(f"ridge must be a number >= 0 or 'auto', got {s['ridge']!r}")
    else:
        s["ridge"] = float(s["ridge"])
    with progress_reporter(progress, "nystrom", "iterations") as cb:
        report, test, train = _core.regress(s, cb)
    r = json.loads(report)
    metrics = [{k: _float(v) for k, v in m.items()} for m in r["results"]]
    if test is None and s["output"]:
        test = np.load(s["output"], mmap_mode="r")
    return RegressionResult(test, train, metrics, _float(r["ridge"]), r["solver"], r["warning"], r)


def kernel_ridge(k_train, y_train, k_test=None, y_test=None, *, ridge: Union[float, str] = 0.0,
                 ridge_absolute: bool = False, validation: int = 0, ridge_grid: Optional[Sequence[float]] = None,
                 t=None, learning_rate: float = 1.0, classes: int = 0, centers: int = 0, center_seed: int = 0,
                 max_iterations: int = 100, tolerance: float = 1e-7, max_memory: Union[None, int, str] = None,
                 threads: int = 0, out: Union[None, str, "os.PathLike[str]"] = None,
                 progress: Progress = None, resume: bool = False,
                 checkpoint_seconds: float = 60.0, center_indices: Optional[Sequence[int]] = None) -> RegressionResult:
    """Kernel ridge regression / gradient-descent predictions on a computed kernel, as `ntk regress`.

    k_train (N, N) and k_test (M, N): arrays or .npy paths (memory-mapped: out-of-core kernels work).
    y_train / y_test: float targets (N,) / (N, O), or integer class labels (N,) (one-hot over
    `classes`, 0 = from the labels; accuracy is reported). ridge: relative to mean(diag K)
    (neural-tangents' diag_reg) unless ridge_absolute; 'auto' picks it on the last `validation`
    training rows (0 = N/10) over ridge_grid (None = 0 and 10^-8 ... 10^1). t: None / inf for the
    converged (ridge) solution, or gradient-descent times (a number or a list) at learning_rate.
    centers > 0: Nyström with that many centers and preconditioned CG (k_train a .npy path);
    center_indices: these training examples as the centers instead of a uniform draw.
    resume: continue an interrupted Nyström solve from the state kept beside `out` (OUT.ntk-state,
    saved at most every checkpoint_seconds), to the same predictions as an uninterrupted run.
    """
    if center_indices is not None and not centers:
        centers = len(center_indices)
    return _regress(dict(k_train=as_input(k_train, "k_train"), k_test=optional_input(k_test, "k_test"),
                         y_train=as_input(y_train, "y_train", allow_int=True),
                         y_test=optional_input(y_test, "y_test", allow_int=True), ridge=ridge,
                         ridge_absolute=bool(ridge_absolute), validation=int(validation),
                         ridge_grid=[float(r) for r in (ridge_grid or [])], times=_times(t),
                         learning_rate=float(learning_rate), classes=int(classes), centers=int(centers),
                         center_seed=int(center_seed), max_iterations=int(max_iterations), tolerance=float(tolerance),
                         max_memory=as_bytes(max_memory), threads=int(threads), output=output_path(out),
                         resume=bool(resume), checkpoint_seconds=checkpoint_seconds,
                         center_indices=[int(i) for i in (center_indices if center_indices is not None else [])]),
                    progress)


def feature_ridge(f_train, y_train, f_test=None, y_test=None, *, ridge: Union[float, str] = 0.0,
                  ridge_absolute: bool = False, validation: int = 0, ridge_grid: Optional[Sequence[float]] = None,
                  classes: int = 0, max_memory: Union[None, int, str] = None, threads: int = 0,
                  out: Union[None, str, "os.PathLike[str]"] = None, resume: bool = False,
                  checkpoint_seconds: float = 60.0, batch_rows: int = 0) -> RegressionResult:
    """Ridge regression on features F (N, m) (from ntkit.features), never forming the N × N kernel:
    the same solution as kernel_ridge on K = F Fᵀ, through the m × m system. As `ntk regress
    --f-train`; arguments as in kernel_ridge (resume: FᵀF's accumulation continues from OUT.ntk-state).
    batch_rows: rows of F per accumulation step (0: about 64 MiB)."""
    return _regress(dict(f_train=as_input(f_train, "f_train"), f_test=optional_input(f_test, "f_test"),
                         y_train=as_input(y_train, "y_train", allow_int=True),
                         y_test=optional_input(y_test, "y_test", allow_int=True), ridge=ridge,
                         ridge_absolute=bool(ridge_absolute), validation=int(validation),
                         ridge_grid=[float(r) for r in (ridge_grid or [])], classes=int(classes),
                         max_memory=as_bytes(max_memory), threads=int(threads), output=output_path(out),
                         resume=bool(resume), checkpoint_seconds=checkpoint_seconds, batch_rows=int(batch_rows)),
                    None)


def _matrix(a, name: str, *, vector_ok: bool = False) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if vector_ok and a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a matrix (2-D), got shape {a.shape}")
    return np.ascontiguousarray(a)


def gradient_descent_mse(k_train, y_train, t=None, k_test=None, *, learning_rate: float = 1.0, diag_reg: float = 0.0,
                         diag_reg_absolute_scale: bool = False, f0_train=None, f0_test=None, threads: int = 0):
    """Predictions of the linearized network trained by gradient flow on the MSE loss, at times t
    (nt.predict.gradient_descent_mse with trace_axes=(-1,)). Returns (train, test): (N, O) and
    (M, O) for one time, (T, N, O) and (T, M, O) for a list; test is None without k_test.
    t None / inf: the converged solution. f0_*: the outputs at t = 0 (None: zeros). Kernels in
    float64 (others converted)."""
    times = _times(t)
    y = _matrix(y_train, "y_train", vector_ok=True)
    train, test, _, warning = _core.gradient_descent_mse(
        _matrix(k_train, "k_train"), y, times, float(learning_rate), float(diag_reg), bool(diag_reg_absolute_scale),
        None if k_test is None else _matrix(k_test, "k_test"),
        None if f0_train is None else _matrix(f0_train, "f0_train", vector_ok=True),
        None if f0_test is None else _matrix(f0_test, "f0_test", vector_ok=True), int(threads))
    if warning:
        import warnings
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    if np.isscalar(t) or t is None:
        train = train[0]
        test = None if test is None else test[0]
    return train, test


def gp_inference(y_train, nngp: Dict[str, Any], ntk: Optional[Dict[str, Any]] = None, *, get: str = "nngp",
                 diag_reg: float = 0.0, diag_reg_absolute_scale: bool = False, threads: int = 0):
    """The posterior of the infinite network on the test set (nt.predict.gp_inference).

    nngp / ntk: dicts of kernels {'train_train': (N, N), 'test_train': (M, N), 'test_test': (M, M)}.
    get='nngp': the Bayesian network, from `nngp`; get='ntk': the infinite ensemble trained to
    convergence, mean from `ntk`, covariance also needing `nngp`. Returns (mean (M, O), covariance
    (M, M) or None without test_test)."""
    check_choice("get", get, ("nngp", "ntk"))

    def kernels(d, name):
        if d is None:
            return {}
        unknown = set(d) - {"train_train", "test_train", "test_test"}
        if unknown:
            raise ValueError(f"{name} has unknown keys {sorted(unknown)}; use train_train, test_train, test_test")
        return {k: _matrix(v, f"{name}[{k!r}]") for k, v in d.items() if v is not None}

    mean, cov, _, warning = _core.gp_inference(get, _matrix(y_train, "y_train", vector_ok=True), kernels(nngp, "nngp"),
                                               kernels(ntk, "ntk"), float(diag_reg), bool(diag_reg_absolute_scale),
                                               int(threads))
    if warning:
        import warnings
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    return mean, cov


def _report(text: str) -> Dict[str, Any]:
    return json.loads(text)


def spectrum(k, *, y=None, top: int = 0, bottom: int = 0, threads: int = 0,
             out: Union[None, str, "os.PathLike[str]"] = None) -> Dict[str, Any]:
    """Eigenvalues and diagnostics of a kernel (N, N), as `ntk spectrum --json`: λmax, λmin,
    condition number, effective rank, trace, and with targets y the kernel-target alignment.
    top / bottom > 0: only that many extreme eigenvalues by Lanczos (k a .npy path, never loaded
    whole). out: the eigenvalues written as .npy. null in the JSON (not defined) becomes None."""
    return _report(_core.spectrum(as_input(k, "k"), optional_input(y, "y", allow_int=True), int(top), int(bottom),
                                  int(threads), output_path(out)))


def compare(k, ref, *, spectra: bool = True, threads: int = 0) -> Dict[str, Any]:
    """k against the reference kernel ref, as `ntk compare --json`: relative Frobenius distance, and
    λmax / condition ratios (spectra=True). A pNTK (N, N) against a full eNTK (N, N, O, O) compares
    pNTK ⊗ I with it."""
    return _report(_core.compare(as_input(k, "k"), as_input(ref, "ref"), bool(spectra), int(threads)))


def pntk_report(net: Network, params: Params, x_train, y_train, x_test, y_test, *, ridge: float = 1e-4,
                method: str = "auto", dtype: Optional[str] = None, max_memory: Union[None, int, str] = None,
                threads: int = 0) -> Dict[str, Any]:
    """How good the pNTK is for this network (Mohamadi et al.), as `ntk pntk-report --json`: the
    full eNTK and the pNTK on train and test, their distance and spectra, and kernel regression
    with each."""
    if not isinstance(net, Network):
        raise ValueError(f"net must be an ntkit.Network, got {type(net).__name__}")
    p, seed = param_source(params)
    return _report(_core.pntk_report(*net._args(), p, seed, net.check_input(x_train, "x_train"),
                                     as_input(y_train, "y_train", allow_int=True), net.check_input(x_test, "x_test"),
                                     as_input(y_test, "y_test", allow_int=True), float(ridge), method, dtype,
                                     as_bytes(max_memory), int(threads)))
