"""The empirical NTK of a small network by JAX neural-tangents (nt.empirical_ntk_fn), at parameters
written by ntkit, for tests/python/test_package_nt.py. Runs in the neural-tangents venv
(scripts/install-nt.sh): build-nt/venv/bin/python tests/python/nt_entk.py ARCH --params P.npz
--x1 X1.npy [--x2 X2.npy] --out K.npy [--implementation 1|2|3].

ntkit stores parameters as neural-tangents' stax does under NTK parameterization (W raw N(0, 1),
Dense (in, out), Conv HWIO), so they are passed over as they are; only the biases take stax's
broadcast shape (1, ..., out). Output: the full kernel (N1, N2, O, O), float64.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nt_kernel  # noqa: E402  (the neural-tangents import without its TensorFlow bridge)

# name -> (input kind, ntkit spec, stax layers). O = 3 outputs, so full, trace and pntk differ.
ARCHS = {
    "mlp": ("vec", "Dense(16, W_std=1.5, b_std=0.3), Relu, Dense(12, W_std=1.5, b_std=0.3), Erf, "
                   "Dense(3, W_std=1.2, b_std=0.1)",
            lambda s: [s.Dense(16, 1.5, 0.3), s.Relu(), s.Dense(12, 1.5, 0.3), s.Erf(), s.Dense(3, 1.2, 0.1)]),
    "cnn": ("img", "Conv(6, 3, padding=SAME, W_std=1.4, b_std=0.1), Relu, Conv(5, 3, W_std=1.3), Relu, "
                   "GlobalAvgPool, Dense(3, b_std=0.2)",
            lambda s: [s.Conv(6, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), s.Relu(),
                       s.Conv(5, (3, 3), W_std=1.3), s.Relu(), s.GlobalAvgPool(), s.Dense(3, b_std=0.2)]),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arch", choices=sorted(ARCHS))
    p.add_argument("--params", required=True)
    p.add_argument("--x1", required=True)
    p.add_argument("--x2")
    p.add_argument("--out", required=True)
    p.add_argument("--implementation", type=int, default=1, help="1 Jacobian contraction, 2 NTK-vector products, "
                                                                   "3 structured derivatives")
    a = p.parse_args()
    nt_kernel._import_nt()
    from neural_tangents._src import empirical
    stax, jnp = nt_kernel.stax, nt_kernel.jnp
    layers = ARCHS[a.arch][2](stax)
    _, apply_fn, _ = stax.serial(*layers)
    stored = np.load(a.params)
    params = []
    for i, layer_params in enumerate(layers):
        if f"{i}.W" not in stored:
            params.append(())
            continue
        w = stored[f"{i}.W"].astype(np.float64)
        b = stored[f"{i}.b"].astype(np.float64) if f"{i}.b" in stored else None
        params.append((jnp.asarray(w), None if b is None else jnp.asarray(b.reshape((1,) * (w.ndim - 1) + b.shape))))
    x1 = np.load(a.x1).astype(np.float64)
    x2 = None if a.x2 is None else np.load(a.x2).astype(np.float64)
    fn = empirical.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                    implementation=empirical.NtkImplementation(a.implementation))
    k = np.asarray(fn(x1, x2, params), dtype=np.float64)
    np.save(a.out, k)


if __name__ == "__main__":
    main()
