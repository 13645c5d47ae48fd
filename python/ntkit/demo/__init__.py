"""ntk demo: the three papers' claims on Fashion-MNIST, measured live on this machine.

    ntk demo [--out DIR] [--quick | --full] [--threads T] [--nt-python PY] [--parts 1,2,3]
    python -m ntkit.demo ...          (the same)

1. Fast finite-width NTK (Novak et al. 2022): ntkit's jc / vp / sd / auto beside PyTorch functorch
   and, with --nt-python, JAX neural-tangents, on an MLP and a CNN, with their agreement.
2. pNTK (Mohamadi et al. 2023): the pNTK against the full eNTK over readout widths, at
   initialization and after a short PyTorch training run (read with from_torch); the fitted slope
   of the error against width.
3. Sketches (Zandieh et al. 2021): exact NTK / CNTK / pNTK kernel ridge against NTKSketch, NTKRF,
   CNTKSketch and gradient-sketch ridge as the feature dimension grows.

Writes DIR/report.md, DIR/results.json (every number) and DIR/*.png; progress goes to stderr.
The default takes a few minutes on 2 cores; --quick is the CI's smoke size, --full the larger runs.
"""
import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from .common import FASHION_MNIST, SIZES, DemoError, Progress, load_fashion_mnist, usable_cores
from .procstat import peak_rss_bytes


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ntk demo", description="The three papers' claims on Fashion-MNIST, measured live on this machine.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    p.add_argument("--out", default="ntk-demo-report", help="directory of the report (created; default %(default)s)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes (about 15 s): checks the pipeline, not the claims")
    size.add_argument("--full", action="store_true", help="larger runs (tens of minutes)")
    p.add_argument("--threads", type=int, default=usable_cores(),
                   help="threads for every tool (default: the %(default)s cores this process may use)")
    p.add_argument("--nt-python", default=os.environ.get("NTKIT_NT_PYTHON") or None,
                   help="a Python that has JAX neural-tangents (scripts/install-nt.sh makes build-nt/venv/bin/python); "
                        "default $NTKIT_NT_PYTHON; without it that peer is left out")
    p.add_argument("--parts", default="1,2,3", help="which parts to run (default %(default)s)")
    p.add_argument("--data", type=Path, default=FASHION_MNIST, help="Fashion-MNIST's IDX files (default %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    a = p.parse_args(argv)
    if a.threads < 1:
        p.error(f"--threads must be >= 1, got {a.threads}")
    try:
        a.parts = sorted({int(x) for x in a.parts.split(",")})
    except ValueError:
        p.error(f"--parts takes numbers from 1, 2, 3 separated by commas, got {a.parts!r}")
    if not a.parts or not set(a.parts) <= {1, 2, 3}:
        p.error(f"--parts takes numbers from 1, 2, 3 separated by commas, got {a.parts}")
    return a


def versions(nt: Optional[dict]) -> dict:
    import matplotlib
    import numpy
    import torch

    import ntkit
    v = {"ntkit": ntkit.__version__, "numpy": numpy.__version__, "PyTorch (functorch)": torch.__version__,
         "matplotlib": matplotlib.__version__}
    if nt:
        v.update(nt)
    return v


def run(a: argparse.Namespace, argv: List[str]) -> Path:
    import ntkit

    from . import entk_methods, pntk_width, report, sketches
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DemoError("the demo draws its plots with matplotlib: apt-get install python3-matplotlib "
                        "(scripts/install-deps.sh python does) or pip install matplotlib")
    level = "quick" if a.quick else "full" if a.full else "default"
    sizes = SIZES[level]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(a.quiet)
    t0 = time.perf_counter()
    ntkit.set_num_threads(a.threads)
    # NumPy's BLAS in this process (part 3's F Fᵀ) at the demo's threads too, like every other tool.
    ntkit._core.set_host_blas_threads(a.threads)
    nt = entk_methods.nt_versions(a.nt_python)
    data = load_fashion_mnist(a.data)
    results = {"command": "ntk demo " + " ".join(shlex.quote(x) for x in argv), "size": level,
               "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "machine": report.machine(a.threads), "versions": versions(nt)}
    with tempfile.TemporaryDirectory(prefix="ntk-demo-") as work:
        if 1 in a.parts:
            results["entk"] = entk_methods.run(data, sizes, a.threads, Path(work), a.nt_python, progress)
    if 2 in a.parts:
        results["pntk"] = pntk_width.run(data, sizes, a.threads, progress)
    if 3 in a.parts:
        results["sketches"] = sketches.run(data, sizes, a.threads, progress)
    results["wall_seconds"] = time.perf_counter() - t0
    results["peak_rss_bytes"] = peak_rss_bytes()
    progress("writing the report and plots")
    report.write(results, out)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parse_args(argv)
    try:
        out = run(a, argv)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no report written", file=sys.stderr)
        return 130
    print(f"report: {out / 'report.md'} (numbers: {out / 'results.json'}, plots: {out}/*.png)")
    return 0
