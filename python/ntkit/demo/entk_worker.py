"""Times one method of the empirical NTK in a process of its own, so that its peak memory is its
own: ntkit's jc / vp / sd / auto, or functorch's Jacobian contraction / NTK-vector products (the
PyTorch tutorial's two methods, on Debian's torch 1.13). Run by the demo:

    python -m ntkit.demo.entk_worker JOB.json      # prints one JSON line

JOB: {"tool": "ntkit" | "functorch", "arch", "width", "spec" (ntkit's, standard parameterization), "method", "params" (ntkit .npz),
"torch_state" (.pt), "x" (.npy, ntkit's layout), "repeats", "threads", "out" (.npy: the kernel
(N, N, O, O) of the last call)}. A first call warms up (allocations, OpenBLAS's buffers) and is
reported apart; then `repeats` timed calls.
"""
import json
import sys
import time

import numpy as np

from .procstat import peak_rss_bytes, rss_bytes


def ntkit_kernel(job, x):
    import ntkit
    net = ntkit.Network(job["spec"], x.shape[1:], parameterization="standard")
    params = dict(np.load(job["params"]))
    return lambda: ntkit.empirical_ntk(net, params, x, mode="full", method=job["method"], threads=job["threads"])


def functorch_kernel(job, x):
    import torch
    from functorch import jacrev, jvp, make_functional, vjp, vmap
    from . import nets
    torch.set_num_threads(job["threads"])
    model = nets.build(job["arch"], job["width"])
    model.load_state_dict(torch.load(job["torch_state"]))
    fnet, params = make_functional(model)
    xt = nets.to_torch_input(job["arch"], x)
    n, outputs = xt.shape[0], nets.OUTPUTS

    def one(p, xi):
        return fnet(p, xi.unsqueeze(0)).squeeze(0)

    def jc():  # per-example Jacobians, contracted layer by layer: Θ[i, j, a, b] = Σ_p J[i, a, p] J[j, b, p]
        jac = [j.flatten(2) for j in vmap(jacrev(one), (None, 0))(params, xt)]
        return sum(torch.einsum("iap,jbp->ijab", j, j) for j in jac)

    def vp():  # one vjp on x1, then a jvp for each of the N·O output directions
        _, vjp_fn = vjp(lambda p: fnet(p, xt), params)

        def column(v):
            return jvp(lambda p: fnet(p, xt), (params,), vjp_fn(v))[1]

        basis = torch.eye(n * outputs).view(n * outputs, n, outputs)
        return vmap(column)(basis).view(n, outputs, n, outputs).permute(0, 2, 1, 3)

    method = {"jc": jc, "vp": vp}[job["method"]]

    def run():
        with torch.no_grad():
            return method().contiguous().numpy()
    return run


def sgemm_gflops(job) -> dict:
    """NumPy's float32 GEMM (the BLAS ntkit links) on n x n matrices: the machine's practical peak,
    measured in this run at the demo's threads (OPENBLAS_NUM_THREADS, set by the parent)."""
    n = job["n"]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(job["repeats"]):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return {"n": n, "seconds": times, "gflops": 2 * n ** 3 / min(times) / 1e9}


def main():
    job = json.load(open(sys.argv[1]))
    if job["tool"] == "sgemm":
        print(json.dumps(sgemm_gflops(job)))
        return
    x = np.load(job["x"])
    run = {"ntkit": ntkit_kernel, "functorch": functorch_kernel}[job["tool"]](job, x)
    baseline = rss_bytes()
    t0 = time.perf_counter()
    k = run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(job["repeats"]):
        del k
        t0 = time.perf_counter()
        k = run()
        times.append(time.perf_counter() - t0)
    np.save(job["out"], np.asarray(k))
    print(json.dumps({"first_call_seconds": first, "seconds": times, "baseline_rss_bytes": baseline,
                      "peak_rss_bytes": peak_rss_bytes()}))


if __name__ == "__main__":
    main()
