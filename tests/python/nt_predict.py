"""neural-tangents' predict module, the oracle of test_nt_predict.py.

Runs under the venv of scripts/install-nt.sh (build-nt/venv/bin/python), never under the system
python, and reads one JSON list of jobs (all float64, jax_enable_x64, CPU):

  nt_predict.py --jobs JOBS.json
  nt_predict.py --check            # exit 0 iff neural_tangents.predict imports

  {"kind": "gd", "k": K.npy, "kt": KT.npy, "y": Y.npy, "times": [t, ..., "inf"], "lr": ETA,
   "diag_reg": R, "absolute": bool, "train": OUT.npy, "test": OUT.npy}
      nt.predict.gradient_descent_mse(K, Y, lr, R, absolute)(t, 0., 0., KT) with zero initial
      outputs, finite times in one call and "inf" as t=None; results stacked (T, N, O) / (T, M, O)
      in the order given. "train" holds nt's regularized train predictions, i.e. the test output
      for k_test_train = K (its own train output follows the flow of K + R and is y at t=None).
  {"kind": "gp", "get": "nngp"|"ntk", "k": .., "kt": .., "ktt": .., "nngp_k": .., "nngp_kt": ..,
   "nngp_ktt": .., "y": .., "diag_reg": R, "mean": OUT.npy, "cov": OUT.npy}
      nt.predict.gp_inference(Kernel(nngp, ntk), Y, R)(get, Kernel(..test-train..),
      Kernel(..test-test..)); for get="nngp" the k* files are the NNGP and the nngp_* keys absent.
"""
import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nt_kernel  # noqa: E402  (its _import_nt handles neural-tangents without TensorFlow)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    nt_kernel._import_nt()
    import numpy as np
    from neural_tangents import predict
    jnp = nt_kernel.jnp
    if args.check:
        return 0
    Kernel = collections.namedtuple("Kernel", "nngp ntk")
    for job in json.loads(Path(args.jobs).read_text()):
        load = lambda key: jnp.asarray(np.load(job[key]))  # noqa: E731
        y = load("y")
        if job["kind"] == "gd":
            fn = predict.gradient_descent_mse(load("k"), y, learning_rate=job["lr"], diag_reg=job["diag_reg"],
                                              diag_reg_absolute_scale=job["absolute"])
            k, kt = load("k"), load("kt")
            finite = [t for t in job["times"] if t != "inf"]
            trains, tests = {}, {}
            if finite:
                ts = jnp.asarray(finite, dtype=jnp.float64)
                te, tr = fn(ts, 0., 0., kt)[1], fn(ts, 0., 0., k)[1]
                for i, t in enumerate(finite):
                    trains[t], tests[t] = np.asarray(tr[i]), np.asarray(te[i])
            if "inf" in job["times"]:
                trains["inf"], tests["inf"] = np.asarray(fn(None, 0., 0., k)[1]), np.asarray(fn(None, 0., 0., kt)[1])
            np.save(job["train"], np.stack([trains[t] for t in job["times"]]))
            np.save(job["test"], np.stack([tests[t] for t in job["times"]]))
        else:
            if job["get"] == "nngp":
                train, test, tt = Kernel(load("k"), None), Kernel(load("kt"), None), Kernel(load("ktt"), None)
            else:
                train = Kernel(load("nngp_k"), load("k"))
                test = Kernel(load("nngp_kt"), load("kt"))
                tt = Kernel(load("nngp_ktt"), None)
            fn = predict.gp_inference(train, y, diag_reg=job["diag_reg"])
            out = fn(job["get"], test, tt)
            np.save(job["mean"], np.asarray(out.mean))
            np.save(job["cov"], np.asarray(out.covariance))
    return 0


if __name__ == "__main__":
    sys.exit(main())
