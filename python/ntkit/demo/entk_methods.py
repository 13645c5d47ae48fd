"""Part 1, Novak et al. (2022): the empirical NTK by Jacobian contraction (jc), NTK-vector products
(vp) and structured derivatives (sd), and ntkit's automatic choice, each timed in its own process
beside the peers on the same network, parameters, inputs and threads: PyTorch functorch (the
tutorial's jc and vp) and JAX neural-tangents (its three implementations, jitted) when a Python
with it is given. Every kernel is checked against ntkit's jc in float64."""
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

import ntkit

from . import nets
from .common import Data, DemoError, Progress, Sizes, median, module_worker, relative_frobenius, run_worker

NTKIT_METHODS = ["jc", "vp", "sd", "auto"]
FUNCTORCH_METHODS = ["jc", "vp"]
NT_IMPLEMENTATIONS = {1: "jc", 2: "vp", 3: "sd"}  # nt.NtkImplementation: 1 JC, 2 NTK-vector products, 3 SD


def nt_versions(nt_python: Optional[str]) -> Optional[Dict[str, str]]:
    """neural-tangents' versions under nt_python, or None when none is given; a given Python without
    it is an error (the user asked for the peer)."""
    if not nt_python:
        return None
    import json
    import subprocess
    try:
        r = subprocess.run([nt_python, str(Path(__file__).with_name("nt_worker.py")), "--check"], capture_output=True,
                           text=True)
    except OSError as e:
        raise DemoError(f"--nt-python {nt_python} cannot be run ({e.strerror}): give the python of a venv with "
                        f"neural-tangents (scripts/install-nt.sh makes build-nt/venv/bin/python)")
    if r.returncode != 0:
        raise DemoError(f"--nt-python {nt_python} cannot import neural-tangents ({r.stderr.strip().splitlines()[-1:]}): "
                        f"run scripts/install-nt.sh, or leave --nt-python out to skip that peer")
    return json.loads(r.stdout)


def sgemm_peak(threads: int, work: Path) -> Dict[str, Any]:
    peak = run_worker(sys.executable, module_worker("entk_worker"), {"tool": "sgemm", "n": 2048, "repeats": 5}, work,
                      "sgemm", threads)
    peak["threads"] = threads
    return peak


def one_arch(arch: str, width: int, n: int, data: Data, sizes: Sizes, threads: int, work: Path,
             nt_python: Optional[str], progress: Progress) -> Dict[str, Any]:
    model = nets.build(arch, width, seed=0)
    net, params = ntkit.from_torch(model, nets.INPUT_SHAPE[arch])
    x = data.split(n, 0, flat=arch == "mlp")[0]
    files = {"params": work / f"{arch}_params.npz", "torch_state": work / f"{arch}_state.pt", "x": work / f"{arch}_x.npy"}
    np.savez(files["params"], **params)
    torch.save(model.state_dict(), files["torch_state"])
    np.save(files["x"], x)
    reference = ntkit.empirical_ntk(net, params, x.astype(np.float64), mode="full", method="jc", dtype="float64",
                                    threads=threads)
    base = {k: str(v) for k, v in files.items()}
    base.update(arch=arch, width=width, spec=net.spec, repeats=sizes.entk_repeats, threads=threads)
    runs = []

    def record(tool, method, label, result, kernel_path):
        k = np.load(kernel_path)
        runs.append({"tool": tool, "method": method, "label": label, "median_seconds": median(result["seconds"]),
                     "seconds": result["seconds"], "first_call_seconds": result["first_call_seconds"],
                     "peak_rss_bytes": result["peak_rss_bytes"], "baseline_rss_bytes": result.get("baseline_rss_bytes"),
                     "relative_difference": relative_frobenius(k, reference)})
        progress(f"  {arch} {label}: {runs[-1]['median_seconds']:.3f} s")

    for tool, methods in (("ntkit", NTKIT_METHODS), ("functorch", FUNCTORCH_METHODS)):
        for method in methods:
            out = work / f"{arch}_{tool}_{method}.npy"
            r = run_worker(sys.executable, module_worker("entk_worker"), dict(base, tool=tool, method=method, out=str(out)),
                           work, f"{arch}_{tool}_{method}", threads)
            record(tool, method, f"{tool} {method}", r, out)
    if nt_python:
        for impl, method in NT_IMPLEMENTATIONS.items():
            job = {"layers": nets.nt_layers(arch, width), "params": str(files["params"]), "x": str(files["x"]),
                   "implementations": [impl], "repeats": sizes.entk_repeats, "threads": threads,
                   "out": str(work / f"{arch}_nt_{{impl}}.npy")}
            r = run_worker(nt_python, [str(Path(__file__).with_name("nt_worker.py"))], job, work, f"{arch}_nt_{impl}",
                           threads)
            res = r["results"][0]
            res.update(peak_rss_bytes=r["peak_rss_bytes"], baseline_rss_bytes=r["baseline_rss_bytes"])
            record("neural-tangents", method, f"neural-tangents {method}", res, res["kernel"])
    plan, flops, chosen = ntkit.kernels._plan(net, x, mode="full", method="auto", threads=threads)
    for r in runs:
        if r["tool"] == "ntkit":
            r["gflop"] = flops[chosen if r["method"] == "auto" else r["method"]] / 1e9
            r["gflops"] = r["gflop"] / r["median_seconds"]
    return {"arch": arch, "spec": net.describe(), "width": width, "n": n, "outputs": nets.OUTPUTS,
            "num_params": net.num_params, "kernel_shape": list(reference.shape), "dtype": "float32",
            "auto_plan": plan, "runs": runs}


def run(data: Data, sizes: Sizes, threads: int, work: Path, nt_python: Optional[str], progress: Progress):
    progress("part 1: empirical NTK methods, ntkit beside functorch" + (" and neural-tangents" if nt_python else ""))
    peak = sgemm_peak(threads, work)
    progress(f"  float32 GEMM peak (NumPy, {peak['n']}^3): {peak['gflops']:.0f} GFLOP/s")
    return {"sgemm": peak, "archs": [one_arch(arch, s["width"], s["n"], data, sizes, threads, work, nt_python, progress)
                                     for arch, s in sizes.entk.items()]}
