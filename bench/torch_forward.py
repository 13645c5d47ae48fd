#!/usr/bin/python3
"""PyTorch forward-pass timings for the configs of bench/bench_forward.cpp (BM_Forward).

Networks are the peer's (shared bench/peers/torch_entk.py): in ntkit syntax, standard parameterization,
  mlp  "Dense(W, b_std=0), Relu, Dense(W, b_std=0), Relu, Dense(10, b_std=0)"   input (N, 784)
  cnn  "Conv(W, 3, padding=SAME, b_std=0), Relu, Conv(W, 3, padding=SAME, b_std=0), Relu,
        GlobalAvgPool, Dense(10, b_std=0)"                                       input (N, 1, 28, 28)
Configs: mlp W=512 N=64 and N=1000, cnn W=64 N=32 and N=128, float32 and float64.

Each config: --warmup untimed calls, then --repeats timed calls of net(x) under
torch.inference_mode(); prints one JSON line with the median (and min) seconds per call and
examples per second. Run with /usr/bin/python3 (Debian's python3-torch).
"""
import argparse
import json
import statistics
import time

import torch

CONFIGS = [("mlp", 512, 64), ("mlp", 512, 1000), ("cnn", 64, 32), ("cnn", 64, 128)]


def build(arch, width, dtype):
    if arch == "mlp":
        net = torch.nn.Sequential(torch.nn.Linear(784, width), torch.nn.ReLU(),
                                  torch.nn.Linear(width, width), torch.nn.ReLU(),
                                  torch.nn.Linear(width, 10))
    else:
        net = torch.nn.Sequential(torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(width, 10))
    return net.to(dtype).eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    ap.add_argument("--arch", choices=["mlp", "cnn", "both"], default="both")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtypes = ["float32", "float64"] if a.dtype == "both" else [a.dtype]
    for arch, width, n in CONFIGS:
        if a.arch not in ("both", arch):
            continue
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            net = build(arch, width, dtype)
            x = torch.randn(n, 784, dtype=dtype) if arch == "mlp" else torch.randn(n, 1, 28, 28, dtype=dtype)
            times = []
            with torch.inference_mode():
                for _ in range(a.warmup):
                    net(x)
                for _ in range(a.repeats):
                    t0 = time.perf_counter()
                    net(x)
                    times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            print(json.dumps({"peer": "torch-" + torch.__version__, "arch": arch, "width": width, "N": n,
                              "dtype": dtype_name, "threads": torch.get_num_threads(), "repeats": a.repeats,
                              "seconds": median, "min_seconds": min(times),
                              "examples_per_second": n / median}), flush=True)


if __name__ == "__main__":
    main()
