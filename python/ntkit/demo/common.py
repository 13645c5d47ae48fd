"""What the demo's parts share: Fashion-MNIST, sizes, timing and running a worker process."""
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import ntkit

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


class DemoError(Exception):
    """A condition the user can fix (a missing dataset, an unusable peer); printed as one error line."""


@dataclass
class Data:
    x_train: np.ndarray  # (60000, 28, 28, 1) float32 in [0, 1]
    y_train: np.ndarray  # (60000,) labels 0-9
    x_test: np.ndarray
    y_test: np.ndarray

    def split(self, n_train: int, n_test: int, *, flat: bool = False, pool: int = 1):
        """The first n_train / n_test images (flattened to 784, or average-pooled by `pool`)."""
        def prep(x):
            if pool > 1:
                h = x.shape[1] // pool
                x = x[:, :h * pool, :h * pool].reshape(len(x), h, pool, h, pool, 1).mean(axis=(2, 4))
            return np.ascontiguousarray(x.reshape(len(x), x[0].size if len(x) else 0) if flat else x, dtype=np.float32)
        return prep(self.x_train[:n_train]), self.y_train[:n_train], prep(self.x_test[:n_test]), self.y_test[:n_test]


def load_fashion_mnist(root: Path = FASHION_MNIST) -> Data:
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        raise DemoError(f"Fashion-MNIST not found in {root} (missing {', '.join(missing)}): install Debian's "
                        f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data DIR")
    x_train, y_train, x_test, y_test = (ntkit.load(root / n) for n in names)
    return Data(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def timed(fn: Callable[[], Any]) -> Tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def median(values: List[float]) -> float:
    return float(statistics.median(values))


def relative_frobenius(a: np.ndarray, ref: np.ndarray) -> float:
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_coretype() -> Optional[str]:
    """The OpenBLAS kernels this process uses: OPENBLAS_CORETYPE as the user set it or as ntkit chose
    it at import (on CPUs OpenBLAS does not recognise, ntkit picks the kernels the CPU supports and
    sets the variable in the C environment, which os.environ does not see)."""
    import ctypes
    value = ctypes.CDLL(None).getenv
    value.restype = ctypes.c_char_p
    core = value(b"OPENBLAS_CORETYPE")
    return core.decode() if core else None


def worker_env(threads: int) -> Dict[str, str]:
    """A worker's environment: the same OpenBLAS kernels as ntkit's (PyTorch and NumPy link the same
    OpenBLAS) and the demo's threads for every BLAS and OpenMP pool."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    core = blas_coretype()
    if core:
        env["OPENBLAS_CORETYPE"] = core
    return env


def run_worker(python: str, args: List[str], job: Dict[str, Any], work: Path, name: str, threads: int) -> Dict[str, Any]:
    """Runs a worker process on a job file and returns the JSON line it prints."""
    path = work / f"{name}.json"
    path.write_text(json.dumps(job))
    r = subprocess.run([python, *args, str(path)], capture_output=True, text=True, env=worker_env(threads))
    if r.returncode != 0:
        last = ((r.stderr or r.stdout).strip().splitlines() or ["no output"])[-1]
        raise DemoError(f"the worker for {name} failed (exit {r.returncode}{', killed: out of memory?' if r.returncode < 0 else ''}): "
                        f"{last}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def module_worker(module: str) -> List[str]:
    return ["-m", f"ntkit.demo.{module}"]


class Progress:
    """One line per step on stderr, with the elapsed time: the demo's progress."""

    def __init__(self, quiet: bool = False):
        self.t0 = time.perf_counter()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:6.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Sizes:
    """How large each part is: --quick (the CI test), the default (a few minutes on 2 cores), --full."""
    entk: Dict[str, Dict[str, int]]          # arch -> {"width", "n"}
    entk_repeats: int
    pntk_widths: List[int]
    pntk_seeds: List[int]
    pntk_n: int                               # train and test examples of each pNTK report
    train_n: int                              # images the PyTorch networks are trained on
    train_epochs: int
    ntk_n: Tuple[int, int]                    # exact NTK vs sketches: train, test
    ntk_dims: List[int]
    cntk_n: Tuple[int, int]
    cntk_pool: int                            # CNTK images average-pooled by this (4: 7 x 7)
    cntk_dims: List[int]
    gradient_width: int                       # the trained MLP whose gradients are sketched
    extra: Dict[str, Any] = field(default_factory=dict)


SIZES = {
    "quick": Sizes(entk={"mlp": {"width": 32, "n": 6}, "cnn": {"width": 4, "n": 3}}, entk_repeats=1,
                   pntk_widths=[16, 32, 64], pntk_seeds=[0, 1], pntk_n=32, train_n=512, train_epochs=1,
                   ntk_n=(200, 100), ntk_dims=[64, 256], cntk_n=(40, 20), cntk_pool=4, cntk_dims=[64, 256],
                   gradient_width=32),
    "default": Sizes(entk={"mlp": {"width": 512, "n": 32}, "cnn": {"width": 32, "n": 16}}, entk_repeats=3,
                     pntk_widths=[64, 128, 256, 512, 1024, 2048], pntk_seeds=[0, 1, 2], pntk_n=256, train_n=10000,
                     train_epochs=2, ntk_n=(2000, 1000), ntk_dims=[256, 1024, 4096, 16384], cntk_n=(1000, 500),
                     cntk_pool=4, cntk_dims=[256, 1024, 4096], gradient_width=512),
    # functorch's vp on the CNN holds N² O activations (3.7 GB at N = 16): the CNN keeps its size.
    "full": Sizes(entk={"mlp": {"width": 1024, "n": 32}, "cnn": {"width": 32, "n": 16}}, entk_repeats=3,
                  pntk_widths=[64, 128, 256, 512, 1024, 2048, 4096], pntk_seeds=[0, 1, 2, 3, 4], pntk_n=512,
                  train_n=60000, train_epochs=3, ntk_n=(10000, 2000), ntk_dims=[256, 1024, 4096, 16384, 32768],
                  cntk_n=(2000, 1000), cntk_pool=2, cntk_dims=[256, 1024, 4096, 16384], gradient_width=1024),
}
