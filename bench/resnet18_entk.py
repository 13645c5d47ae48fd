#!/usr/bin/python3
"""ResNet-18 (torchvision, eval, num_classes=10, PyTorch init) on 32x32x3, N=16, 2 threads: ntkit against
functorch's Jacobian contraction and NTK-vector products, full eNTK and pNTK (issue 15's benchmark).
Each configuration in its own process, timed after a warm-up call; peak memory is the process's VmHWM
(PyTorch imported in every process). Run with the package's venv:

    build-py/venv/bin/python bench/resnet18_entk.py
"""
import json, subprocess, sys, time
code = r'''
import sys, time, json, numpy as np, torch, functorch
from torchvision.models import resnet18
tool, mode = sys.argv[1], sys.argv[2]
torch.set_num_threads(2); torch.manual_seed(0)
m = resnet18(num_classes=10).eval()
x = np.random.default_rng(0).standard_normal((16, 32, 32, 3)).astype(np.float32)
xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
def hwm():
    for l in open("/proc/self/status"):
        if l.startswith("VmHWM"): return int(l.split()[1]) // 1024
if tool == "ntkit":
    import ntkit
    net, p = ntkit.from_torch(m, (32, 32, 3))
    f = lambda: ntkit.empirical_ntk(net, p, x, mode=mode, threads=2)
else:
    fm, params, bufs = functorch.make_functional_with_buffers(m)
    one = lambda pr, xi: fm(pr, bufs, xi.unsqueeze(0)).squeeze(0)
    if tool == "functorch-jc":
        def f():
            with torch.no_grad():
                J = [j.flatten(2) for j in functorch.vmap(functorch.jacrev(one), (None, 0))(params, xt)]
                if mode == "full": return sum(torch.einsum("iap,jbp->ijab", j, j) for j in J)
                return sum(torch.einsum("iap,jbp->ij", j, j) for j in J) / 10
    else:
        def f():
            _, vjp_fn = functorch.vjp(lambda pr: fm(pr, bufs, xt), params)
            def col(v): return functorch.jvp(lambda pr: fm(pr, bufs, xt), (params,), vjp_fn(v))[1]
            basis = torch.eye(160).view(160, 16, 10)
            with torch.no_grad():
                return functorch.vmap(col)(basis).view(16, 10, 16, 10).permute(0, 2, 1, 3)
f()
t = time.perf_counter(); f(); dt = time.perf_counter() - t
print(json.dumps({"tool": tool, "mode": mode, "seconds": dt, "peak_mib": hwm()}))
'''
for tool, mode in [("ntkit", "full"), ("ntkit", "pntk"), ("functorch-jc", "full"), ("functorch-jc", "pntk"), ("functorch-vp", "full")]:
    r = subprocess.run([sys.executable, "-c", code, tool, mode], capture_output=True, text=True)
    print(r.stdout.strip() or r.stderr.strip()[-500:], flush=True)
