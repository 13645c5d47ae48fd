#!/usr/bin/python3
"""ResNet-18 (torchvision, eval, PyTorch init) full eNTK and pNTK, 2 threads: ntkit against functorch's
Jacobian contraction and NTK-vector products (issue 15's benchmarks). Default: 32x32x3, N=16, O=10, every
tool; --size 224 --n 8 --classes 8 --tools ntkit-full is the first paper's ImageNet-size configuration.
Each configuration in its own process, timed after a warm-up call (median of --repeats); peak memory is
the process's VmHWM (PyTorch imported in every process). Run with the package's venv:

    build-py/venv/bin/python bench/resnet18_entk.py [--size 32] [--n 16] [--classes 10] [--repeats 1]
        [--tools ntkit-full,ntkit-pntk,functorch-jc-full,functorch-jc-pntk,functorch-vp-full]
"""
import argparse, json, subprocess, sys, time
code = r'''
import sys, time, json, numpy as np, torch, functorch
from torchvision.models import resnet18
tool, mode, S, N, O, R = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
torch.set_num_threads(2); torch.manual_seed(0)
m = resnet18(num_classes=O).eval()
x = np.random.default_rng(0).standard_normal((N, S, S, 3)).astype(np.float32)
xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
from ntkit.demo.procstat import peak_rss_bytes
def hwm(): return peak_rss_bytes() // 2**20
if tool == "ntkit":
    import ntkit
    net, p = ntkit.from_torch(m, (S, S, 3))
    f = lambda: ntkit.empirical_ntk(net, p, x, mode=mode, threads=2)
else:
    fm, params, bufs = functorch.make_functional_with_buffers(m)
    one = lambda pr, xi: fm(pr, bufs, xi.unsqueeze(0)).squeeze(0)
    if tool == "functorch-jc":
        def f():
            with torch.no_grad():
                J = [j.flatten(2) for j in functorch.vmap(functorch.jacrev(one), (None, 0))(params, xt)]
                if mode == "full": return sum(torch.einsum("iap,jbp->ijab", j, j) for j in J)
                return sum(torch.einsum("iap,jbp->ij", j, j) for j in J) / O
    else:
        def f():
            _, vjp_fn = functorch.vjp(lambda pr: fm(pr, bufs, xt), params)
            def col(v): return functorch.jvp(lambda pr: fm(pr, bufs, xt), (params,), vjp_fn(v))[1]
            basis = torch.eye(N * O).view(N * O, N, O)
            with torch.no_grad():
                return functorch.vmap(col)(basis).view(N, O, N, O).permute(0, 2, 1, 3)
f()
times = []
for _ in range(R):
    t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
print(json.dumps({"tool": tool, "mode": mode, "size": S, "n": N, "outputs": O, "median_seconds": sorted(times)[len(times) // 2],
                  "seconds": times, "peak_mib": hwm()}))
'''
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--size", type=int, default=32)
ap.add_argument("--n", type=int, default=16)
ap.add_argument("--classes", type=int, default=10)
ap.add_argument("--repeats", type=int, default=1)
ap.add_argument("--tools", default="ntkit-full,ntkit-pntk,functorch-jc-full,functorch-jc-pntk,functorch-vp-full")
a = ap.parse_args()
for item in a.tools.split(","):
    tool, mode = item.rsplit("-", 1)
    r = subprocess.run([sys.executable, "-c", code, tool, mode, str(a.size), str(a.n), str(a.classes), str(a.repeats)],
                       capture_output=True, text=True)
    print(r.stdout.strip() or r.stderr.strip()[-500:], flush=True)
