#!/usr/bin/env python3
"""pNTK of the first N Fashion-MNIST training images (default 10,000) through torchvision's ResNet-18
with a 1-channel first convolution (eval mode, PyTorch's initialization, seed 0), under a memory bound
(default --max-memory 8G), written out of core to OUT (issue 15's benchmark). Prints the plan, progress,
wall time and the process's peak RSS (VmHWM), then checks 8 x 8 entries (examples spread over the set)
against functorch's Jacobian contraction in float64. Run with the package's venv:

    build-py/venv/bin/python bench/resnet18_fmnist_pntk.py [--n 10000] [--max-memory 8G] [--out K.npy]
"""
import argparse
import sys
import time

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet18

import ntkit
from ntkit.demo.common import load_fashion_mnist
from ntkit.demo.procstat import peak_rss_bytes

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--n", type=int, default=10000)
ap.add_argument("--max-memory", default="8G")
ap.add_argument("--out", default="resnet18_fmnist_pntk.npy")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()

torch.manual_seed(0)
model = resnet18(num_classes=10)
model.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
model.eval()
net, params = ntkit.from_torch(model, (28, 28, 1))
x = load_fashion_mnist().x_train[:a.n]
print(f"ResNet-18, 1-channel stem, {net.num_params:,} parameters; {a.n} images 28 x 28 x 1; "
      f"{a.threads} threads; --max-memory {a.max_memory}", flush=True)
print(ntkit.plan_empirical_ntk(net, x, mode="pntk", max_memory=a.max_memory, out=a.out, threads=a.threads), flush=True)
last = [0.0]


def progress(done, total):
    now = time.perf_counter()
    if now - last[0] > 60 or done == total:
        last[0] = now
        print(f"  [{now - t0:7.0f} s] {done}/{total} pairs", file=sys.stderr, flush=True)


t0 = time.perf_counter()
K = ntkit.empirical_ntk(net, params, x, mode="pntk", max_memory=a.max_memory, out=a.out, threads=a.threads,
                        progress=progress)
wall = time.perf_counter() - t0
print(f"pNTK {K.shape} {K.dtype} -> {a.out}: wall {wall:.1f} s, peak RSS {peak_rss_bytes() / 2**30:.2f} GiB", flush=True)

# Spot check in float64 against functorch's Jacobian contraction (the sum of the 10 logits' gradients).
import functorch  # noqa: E402
idx = np.linspace(0, a.n - 1, 8).astype(int)
m64 = model.double()
fm, p64, bufs = functorch.make_functional_with_buffers(m64)
xt = torch.from_numpy(x[idx].astype(np.float64)).permute(0, 3, 1, 2).contiguous()
with torch.no_grad():
    jac = functorch.vmap(functorch.jacrev(lambda p, xi: fm(p, bufs, xi.unsqueeze(0)).squeeze(0).sum()), (None, 0))(p64, xt)
    g = torch.cat([j.flatten(1) for j in jac], dim=1)
    ref = (g @ g.T).numpy() / 10
sub = np.asarray(K[np.ix_(idx, idx)], dtype=np.float64)
print(f"8 x 8 entries (examples {list(idx)}) against functorch in float64: max relative "
      f"{np.abs(sub - ref).max() / np.abs(ref).max():.1e}")
