"""The overhead of ntkit.dask (issue 17): the README's FCN NTK at N = 20,000 (float32) computed in one
process with 2 threads, then on a LocalCluster of 2 worker processes x 1 thread, tile by tile into a
Zarr store (the store's upper tiles written, as the one process computes the upper triangle).

    build-py/venv/bin/python bench/dask_overhead.py [--n 20000] [--tile 2000] [--rounds 3]

Prints each round's wall time, the median ratio, and the per-task overhead: the workers' time
(2 x the wall time) not spent inside tasks, over the number of tasks.
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

import ntkit
import ntkit.dask as nd
from distributed import Client, LocalCluster

FCN = ", ".join(["Dense(512, W_std=1.4142135623730951, b_std=0.05), Relu"] * 3 + ["Dense(1)"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--tile", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    x = np.random.default_rng(0).random((a.n, 784), dtype=np.float32)
    net = ntkit.Network(FCN, input_shape=(784,))
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    client.run(lambda: ntkit.kernel(net, x[:8], dtype="float32", threads=1))  # warm the workers' imports
    ntkit.kernel(net, x[:8], dtype="float32", threads=2)
    one, dist, task_sums, tasks = [], [], [], 0
    tmp = tempfile.mkdtemp(prefix="ntk_dask_bench_")
    try:
        for r in range(a.rounds):
            t0 = time.perf_counter()
            k = ntkit.kernel(net, x, dtype="float32", threads=2)
            one.append(time.perf_counter() - t0)
            del k
            store = os.path.join(tmp, f"k{r}.zarr")
            t0 = time.perf_counter()
            run = nd.kernel(store, net, x, dtype="float32", tile=a.tile, client=client)
            dist.append(time.perf_counter() - t0)
            task_sums.append(sum(run.task_seconds))
            tasks = run.computed
            shutil.rmtree(store)
            print(f"round {r + 1}: one process {one[-1]:.2f} s, dask {dist[-1]:.2f} s ({tasks} tasks, "
                  f"{task_sums[-1]:.1f} task-seconds)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        client.close()
        cluster.close()
    o, d = statistics.median(one), statistics.median(dist)
    print(f"N = {a.n}, tile {a.tile}: one process (2 threads) median {o:.2f} s; dask (2 workers x 1 thread) "
          f"median {d:.2f} s; ratio {d / o:.3f}")
    # Worker time not spent inside a task's own work (scheduling, reading inputs, waiting for the
    # last tasks), per task: 2 workers x the wall time, less the tasks' measured seconds.
    idle = [2 * w - t for w, t in zip(dist, task_sums)]
    print(f"per-task overhead: {statistics.median(idle) / tasks * 1000:.1f} ms of worker time per task "
          f"(tasks' own time {statistics.median(task_sums):.1f} s, including their Zarr writes, against the one "
          f"process's {2 * o:.1f} core-seconds)")


if __name__ == "__main__":
    main()
