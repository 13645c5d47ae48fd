"""Kernels of a network: empirical (finite-width) NTK / NNGP and the infinite-width NTK / NNGP."""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np

from . import _core
from ._util import Progress, as_bytes, check_choice, output_path, progress_reporter
from .network import Network, Params, param_source

MODES_DOC = "'full' (N1, N2, O, O), 'trace' (mean over outputs), 'trace-sum', 'pntk', 'logit=K', 'diagonal' (N1, N2, O)"
METHODS = ("auto", "jc", "vp", "sd")


def _check_net(net) -> Network:
    if not isinstance(net, Network):
        raise ValueError(f"net must be an ntkit.Network, got {type(net).__name__}")
    return net


def _result(array, path: str) -> np.ndarray:
    """The array in memory, or the file the job wrote, memory-mapped."""
    return array if array is not None else np.load(path, mmap_mode="r")


def _check_out(out, out_of_core, resume=False):
    if out_of_core and out is None:
        raise ValueError("out_of_core=True writes the kernel band by band to a file: give out='K.npy'")
    if resume and out is None:
        raise ValueError("resume=True continues the output file of an interrupted run: give its out='K.npy'")


def _entk_common(net, x1, x2, method, dtype, out, out_of_core, resume=False):
    net = _check_net(net)
    check_choice("method", method, METHODS)
    if dtype is not None:
        check_choice("dtype", dtype, ("float32", "float64"))
    _check_out(out, out_of_core, resume)
    x1 = net.check_input(x1, "x1")
    x2 = None if x2 is None else net.check_input(x2, "x2")
    return net, x1, x2


def empirical_ntk(net: Network, params: Params, x1, x2=None, *, mode: str = "trace", method: str = "auto",
                  dtype: Optional[str] = None, nngp: bool = False, accumulate_float64: bool = False, tile: int = 0,
                  max_memory: Union[None, int, str] = None, out: Union[None, str, "os.PathLike[str]"] = None,
                  out_of_core: bool = False, resume: bool = False, threads: int = 0,
                  progress: Progress = None) -> np.ndarray:
    """The empirical NTK Θ = J(x1) J(x2)ᵀ of `net` at `params`, as `ntk entk`.

    mode: {modes}. method: 'auto' (the planner's choice by a cost model), 'jc' (Jacobian
    contraction), 'vp' (NTK-vector products) or 'sd' (structured derivatives). x2=None computes the
    symmetric kernel of x1. nngp=True gives the empirical NNGP f(x1) f(x2)ᵀ instead.
    dtype: None is float64 for float64 inputs, float32 otherwise; accumulate_float64 computes a
    float32 kernel in float64 arithmetic. max_memory bounds the kernel plus working memory (bytes
    or '4G'); with out='K.npy' the kernel is written there (out of core, band by band, when it does
    not fit or out_of_core=True) and returned as a read-only numpy.memmap. Written out of core, the
    file keeps a checkpoint (out + '.ntk-checkpoint') while it runs: after an interrupted run the
    same call with resume=True continues from its last finished band (and implies out_of_core).
    progress: True for a tqdm bar, or a callable(done_pairs, total_pairs).
    """
    net, x1, x2 = _entk_common(net, x1, x2, method, dtype, out, out_of_core, resume)
    p, seed = param_source(params)
    with progress_reporter(progress, "entk", "pairs") as cb:
        array, path, _ = _core.entk(*net._args(), p, seed, x1, x2, mode, method, nngp, dtype, accumulate_float64,
                                    int(tile), as_bytes(max_memory), out_of_core, resume, threads, cb,
                                    output_path(out))
    return _result(array, path)


empirical_ntk.__doc__ = empirical_ntk.__doc__.format(modes=MODES_DOC)


def plan_empirical_ntk(net: Network, x1, x2=None, *, mode: str = "trace", method: str = "auto",
                       dtype: Optional[str] = None, accumulate_float64: bool = False, tile: int = 0,
                       max_memory: Union[None, int, str] = None, out: Union[None, str, "os.PathLike[str]"] = None,
                       out_of_core: bool = False, threads: int = 0) -> str:
    """What empirical_ntk would do, without computing: the text of `ntk entk --explain` (sizes,
    placement, the chosen method and tile, each method's FLOP and memory estimates)."""
    return _plan(net, x1, x2, mode=mode, method=method, dtype=dtype, accumulate_float64=accumulate_float64, tile=tile,
                 max_memory=max_memory, out=out, out_of_core=out_of_core, threads=threads)[0]


def _plan(net, x1, x2=None, *, mode="trace", method="auto", dtype=None, accumulate_float64=False, tile=0,
          max_memory=None, out=None, out_of_core=False, threads=0):
    """(the --explain text, {method: estimated FLOPs}, the chosen method): the planner's numbers
    themselves, for callers that report achieved GFLOP/s (ntkit.demo)."""
    net, x1, x2 = _entk_common(net, x1, x2, method, dtype, out, out_of_core)
    return _core.explain_entk(*net._args(), x1, x2, mode, method, dtype, accumulate_float64, int(tile),
                              as_bytes(max_memory), out_of_core, threads, output_path(out))


def kernel(net: Network, x1, x2=None, *, get: str = "ntk", dtype: str = "float64",
           max_memory: Union[None, int, str] = None, out: Union[None, str, "os.PathLike[str]"] = None,
           out_of_core: bool = False, resume: bool = False, threads: int = 0,
           progress: Progress = None) -> np.ndarray:
    """The infinite-width kernel of `net`'s architecture, as `ntk kernel`: get='ntk' or 'nngp',
    (N1, N2) (the kernel is K ⊗ I over the outputs). x2=None: the symmetric kernel of x1.
    dtype float64 (default) or float32; max_memory, out, out_of_core, resume and progress as in
    empirical_ntk."""
    net = _check_net(net)
    check_choice("get", get, ("ntk", "nngp"))
    check_choice("dtype", dtype, ("float32", "float64"))
    _check_out(out, out_of_core, resume)
    x1 = net.check_input(x1, "x1")
    x2 = None if x2 is None else net.check_input(x2, "x2")
    with progress_reporter(progress, "kernel", "pairs") as cb:
        array, path, _ = _core.kernel(*net._args(), x1, x2, get, dtype, as_bytes(max_memory), out_of_core, resume,
                                      threads, cb, output_path(out))
    return _result(array, path)
