"""What every front-end function shares: inputs as the C++ jobs take them, sizes, progress."""
from __future__ import annotations

import os
from typing import Any, Callable, Optional, Union

import numpy as np

from . import _core

ArrayOrPath = Union[np.ndarray, str, "os.PathLike[str]"]
Progress = Union[None, bool, Callable[[int, int], Any]]

# The integer element types the C++ jobs read (ntk::DType), and lossless widenings into them.
_JOB_INTS = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8)}
_WIDER_INT = {np.dtype(np.uint16): np.dtype(np.int32), np.dtype(np.uint32): np.dtype(np.int64)}


def as_input(x: Any, name: str, *, allow_int: bool = False) -> Union[np.ndarray, str]:
    """An array or a file path as a job reads it.

    A path (str or os.PathLike) is passed through: the job reads it (.npy or IDX) as the CLI would.
    An array that is C-contiguous, native-endian float32 or float64 is passed as it is and the C++
    side reads its buffer in place (no copy when its dtype is the compute dtype); any other layout
    or float type is converted once here. With allow_int (network and feature-map inputs, targets
    and labels) integer arrays of the types the jobs read (int8..int64, uint8) are passed as they
    are, as the CLI reads an integer .npy: the job converts inputs to the compute type (float32
    unless asked otherwise) and takes integer targets as class labels; other integer types are
    widened without loss (uint16 -> int32, uint32 and uint64 -> int64; uint64 values beyond int64
    -> float64). Otherwise (kernels, features given to the solvers) and for bool, integers are
    converted to float64.
    """
    if isinstance(x, (str, os.PathLike)):
        return os.fspath(x)
    a = np.asarray(x)
    if a.dtype.kind == "f" and a.dtype.itemsize in (4, 8):
        dtype = a.dtype.newbyteorder("=")
    elif a.dtype.kind == "f":  # float16, longdouble
        dtype = np.dtype(np.float64 if a.dtype.itemsize > 8 else np.float32)
    elif a.dtype.kind in "iu" and allow_int:
        native = a.dtype.newbyteorder("=")
        if native in _JOB_INTS:
            dtype = native
        elif native in _WIDER_INT:
            dtype = _WIDER_INT[native]
        else:  # uint64: int64 when its values fit (they always do for labels and pixels)
            fits = a.size == 0 or int(a.max()) <= np.iinfo(np.int64).max
            dtype = np.dtype(np.int64 if fits else np.float64)
    elif a.dtype.kind in "iub":
        dtype = np.dtype(np.float64)
    else:
        raise ValueError(f"{name} must be a float or integer array, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


def optional_input(x: Any, name: str, *, allow_int: bool = False) -> Optional[Union[np.ndarray, str]]:
    return None if x is None else as_input(x, name, allow_int=allow_int)


def as_bytes(max_memory: Union[None, int, str]) -> int:
    """max_memory as bytes: an int, a size such as "4G" / "512M" / "1.5GiB", or None / 0 (no limit)."""
    if max_memory is None:
        return 0
    if isinstance(max_memory, str):
        return int(_core.parse_bytes(max_memory))
    if isinstance(max_memory, (int, np.integer)) and not isinstance(max_memory, bool) and max_memory >= 0:
        return int(max_memory)
    raise ValueError(f"max_memory must be a number of bytes >= 0 or a size such as '4G', got {max_memory!r}")


def output_path(out: Union[None, str, "os.PathLike[str]"]) -> str:
    return "" if out is None else os.fspath(out)


class _Tqdm:
    """A tqdm bar fed with (done, total); closed by the caller."""

    def __init__(self, desc: str, unit: str):
        try:
            from tqdm.auto import tqdm
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("progress=True draws a tqdm bar: pip install tqdm (or pass a callable)") from e
        self._bar = tqdm(desc=desc, unit=unit, total=None)

    def __call__(self, done: int, total: int) -> None:
        if self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class progress_reporter:
    """Context manager turning the `progress` argument into what the C++ job calls.

    None: nothing (Ctrl-C is still honoured between tiles); True: a tqdm bar; a callable: called as
    progress(done, total) from the computing thread with the GIL held. An exception it raises stops
    the job (nothing is written) and propagates.
    """

    def __init__(self, progress: Progress, desc: str, unit: str):
        if progress is None or progress is False:
            self.callback = None
        elif progress is True:
            self.callback = _Tqdm(desc, unit)
        elif callable(progress):
            self.callback = progress
        else:
            raise ValueError(f"progress must be None, True (a tqdm bar) or a callable(done, total), got {progress!r}")

    def __enter__(self):
        return self.callback

    def __exit__(self, *exc) -> None:
        if isinstance(self.callback, _Tqdm):
            self.callback.close()


def check_choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def load(path: Union[str, "os.PathLike[str]"], *, idx_scale: str = "unit") -> np.ndarray:
    """An input file as the jobs and `ntk` read it: .npy as stored; IDX (gzipped or not, e.g.
    Fashion-MNIST from Debian's dataset-fashion-mnist) with image stacks (N, H, W) as NHWC
    (N, H, W, 1) and their unsigned bytes divided by 255 in float32 (idx_scale='unit', as
    torchvision's ToTensor; 'raw' keeps 0..255), label files (N,) as integers."""
    check_choice("idx_scale", idx_scale, ("unit", "raw"))
    path = os.fspath(path)
    a = _core.load_input(path)
    with open(path, "rb") as f:
        is_npy = f.read(6) == b"\x93NUMPY"  # as the C++ reader decides; .npy is never rescaled
    if idx_scale == "unit" and not is_npy and a.dtype == np.uint8 and a.ndim >= 2:
        a = a.astype(np.float32) / np.float32(255)  # the C++ reader's float32 division, bit for bit
    return a
