"""Times JAX neural-tangents' empirical NTK (nt.empirical_ntk_fn, jitted) for the demo's first part.

Runs under a Python that has neural-tangents (scripts/install-nt.sh makes build-nt/venv), not
under the demo's own: it imports only NumPy, JAX and neural_tangents, never ntkit.

    python nt_worker.py --check                  # exit 0 iff neural-tangents imports; prints versions
    python nt_worker.py JOB.json                 # prints one JSON line of results

JOB: {"layers": [...], "params": P.npz, "x": X.npy, "implementations": [1, 2, 3], "repeats": R,
"threads": T, "out": "K_{impl}.npy"}. layers are ntkit's (standard parameterization, so the stored
weights are applied as they are): {"type": "Dense", "out": n, "key": "0"}, {"type": "Conv", "out":
n, "filter": k, "padding": "SAME", "key": "0"}, {"type": "Relu"}, {"type": "GlobalAvgPool"}.
Each implementation is compiled by a first call (its time reported apart), then timed R times on
the same inputs; the kernel (N, N, O, O) of the last call is written for the agreement check.
"""
import importlib.util
import json
import os
import sys
import time
import types


def import_nt(x64: bool = False):
    """(jax, neural_tangents.stax, its empirical module), without the package's __init__ when that
    fails: it imports the experimental TensorFlow bridge, which neither the demo nor the tests
    (tests/python/nt_kernel.py imports this file) need. x64: JAX in float64."""
    import jax
    jax.config.update("jax_enable_x64", x64)
    jax.config.update("jax_platforms", "cpu")
    try:
        import neural_tangents  # noqa: F401
    except ImportError:
        for name in [m for m in sys.modules if m.split(".")[0] == "neural_tangents"]:
            del sys.modules[name]
        spec = importlib.util.find_spec("neural_tangents")
        if spec is None:
            raise
        pkg = types.ModuleType("neural_tangents")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["neural_tangents"] = pkg
    from neural_tangents import stax
    from neural_tangents._src import empirical
    return jax, stax, empirical


def versions():
    from importlib.metadata import version
    return {name: version(name) for name in ("neural-tangents", "jax", "jaxlib")}


def build(stax, layers):
    out = []
    for layer in layers:
        kind = layer["type"]
        if kind == "Dense":
            out.append(stax.Dense(layer["out"], W_std=1.0, b_std=1.0, parameterization="standard"))
        elif kind == "Conv":
            k = layer["filter"]
            out.append(stax.Conv(layer["out"], (k, k), padding=layer["padding"], W_std=1.0, b_std=1.0,
                                 parameterization="standard"))
        elif kind == "Relu":
            out.append(stax.Relu())
        elif kind == "GlobalAvgPool":
            out.append(stax.GlobalAvgPool())
        else:
            raise SystemExit(f"nt_worker: no stax layer for {kind}")
    return stax.serial(*out)


def main():
    if sys.argv[1:] == ["--check"]:
        import_nt()
        print(json.dumps(versions()))
        return
    from procstat import peak_rss_bytes, rss_bytes  # beside this file: sys.path[0] when run as a script
    job = json.load(open(sys.argv[1]))
    # XLA's CPU backend sizes its thread pool from the affinity mask: give it the demo's threads.
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:job["threads"]]
        os.sched_setaffinity(0, cpus)
    jax, stax, empirical = import_nt()
    import numpy as np
    jnp = jax.numpy
    _, apply_fn, _ = build(stax, job["layers"])
    stored = np.load(job["params"])
    params = []
    for layer in job["layers"]:
        if "key" not in layer:
            params.append(())
            continue
        w = stored[layer["key"] + ".W"]
        b = stored[layer["key"] + ".b"]
        params.append((jnp.asarray(w), jnp.asarray(b.reshape((1,) * (w.ndim - 1) + b.shape))))
    x = jnp.asarray(np.load(job["x"]))
    baseline = rss_bytes()
    results = []
    for impl in job["implementations"]:
        fn = jax.jit(empirical.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                                implementation=empirical.NtkImplementation(impl)))
        t0 = time.perf_counter()
        k = fn(x, None, params).block_until_ready()
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(job["repeats"]):
            t0 = time.perf_counter()
            k = fn(x, None, params).block_until_ready()
            times.append(time.perf_counter() - t0)
        out = job["out"].format(impl=impl)
        np.save(out, np.asarray(k))
        results.append({"implementation": impl, "first_call_seconds": compile_s, "seconds": times, "kernel": out})
    print(json.dumps({"results": results, "versions": versions(),
                      "baseline_rss_bytes": baseline, "peak_rss_bytes": peak_rss_bytes()}))


if __name__ == "__main__":
    main()
