"""The exact CNTK of Arora et al. 2019 ("On Exact Computation with an Infinitely Wide Neural Net",
NeurIPS 2019, arXiv:1904.11955), written from the paper's definition in plain NumPy (float64).

This is an independent oracle for ntkit's infinite-width image kernels: it does not call ntkit and
does not use neural-tangents' conventions. Small images only: it keeps the full pixel-pair tensor
(N1, H, W, N2, H, W) in memory.

Their network: L convolutional layers (q x q filters, stride 1, zero ("SAME") padding, ReLU after
each), then either global average pooling (GAP) and a fully-connected layer, or a fully-connected
layer on the flattened last feature map (the "vanilla" CNTK-V). Their "depth" (the `--depth` of
their released code, 3/4/6/11/21 in their Table 1) counts the conv layers plus that final
fully-connected layer: depth = L + 1.

Notation (their Section 4, c_sigma = 2 for ReLU, q = 3):

  patch-trace operator  T[A]_{ij,i'j'} = sum over a, b in {-(q-1)/2 .. (q-1)/2} of A_{i+a,j+b,i'+a,j'+b},
                        entries outside the image being zero (zero padding);
  Sigma^(0)(x, x')   = T[ sum over channels c of x_c (outer) x'_c ]       (no 1/C, no 1/q^2);
  for h = 1..L:  Lambda = [[Sigma^(h-1)(x,x)_{ij,ij}, Sigma^(h-1)(x,x')_{ij,i'j'}], [.., Sigma^(h-1)(x',x')_{i'j',i'j'}]],
                 K^(h)    = (c_sigma/q^2) E[relu(u) relu(v)],  (u, v) ~ N(0, Lambda),
                 Kdot^(h) = (c_sigma/q^2) E[relu'(u) relu'(v)],
                 Sigma^(h) = T[K^(h)]                                   (h < L);
  Theta^(0) = Sigma^(0) if the first layer is trained, else 0;
  Theta^(h) = T[Kdot^(h) * Theta^(h-1) + K^(h)]                          (h < L);
  Theta^(L) = Kdot^(h) * Theta^(L-1) + K^(L)  (pointwise: no conv follows the last ReLU),
              the K^(L) term (gradient of the final fully-connected layer) only if that layer is trained;
  CNTK-GAP(x, x') = (1/(HW)^2) * sum over all pixel pairs of Theta^(L)(x, x');
  CNTK-V(x, x')   = sum over pixels p of Theta^(L)(x, x')_{p,p}.

The paper's CNTK-GAP (their Table 1, released code `--gap yes --fix yes`) fixes the first and the
last layer: train_first=False, train_last=False. The fully trained network (`--gap yes --fix no`)
is train_first=train_last=True. The closed forms used for the Gaussian expectations, with
rho = Lambda_12 / sqrt(Lambda_11 Lambda_22) and the arc-cosine functions of degree 1 and 0:

  (c_sigma) E[relu(u) relu(v)]   = sqrt(Lambda_11 Lambda_22) * (sqrt(1 - rho^2) + rho (pi - arccos rho)) / pi,
  (c_sigma) E[relu'(u) relu'(v)] = (pi - arccos rho) / pi.
"""
import numpy as np


def patch_trace(a, q=3):
    """T[A] for A of shape (N1, H, W, N2, H, W): the sum over the q x q window shifted jointly on both
    images of a pixel pair, with zero padding."""
    r = (q - 1) // 2
    n1, h, w, n2, h2, w2 = a.shape
    pad = np.zeros((n1, h + 2 * r, w + 2 * r, n2, h2 + 2 * r, w2 + 2 * r))
    pad[:, r:r + h, r:r + w, :, r:r + h2, r:r + w2] = a
    out = np.zeros_like(a)
    for da in range(q):
        for db in range(q):
            out += pad[:, da:da + h, db:db + w, :, da:da + h2, db:db + w2]
    return out


def patch_trace_diag(d, q=3):
    """T restricted to the diagonal pairs ((i,j),(i,j)) of one image: d has shape (N, H, W)."""
    r = (q - 1) // 2
    n, h, w = d.shape
    pad = np.zeros((n, h + 2 * r, w + 2 * r))
    pad[:, r:r + h, r:r + w] = d
    out = np.zeros_like(d)
    for da in range(q):
        for db in range(q):
            out += pad[:, da:da + h, db:db + w]
    return out


def relu_expectations(s12, s11, s22, c_sigma=2.0):
    """c_sigma E[relu(u)relu(v)] and c_sigma E[relu'(u)relu'(v)] for (u, v) ~ N(0, [[s11, s12], [s12, s22]]).
    s11 and s22 broadcast against s12."""
    norm = np.sqrt(s11 * s22)
    rho = np.clip(s12 / norm, -1.0, 1.0)
    theta = np.arccos(rho)
    k = c_sigma * norm * (np.sqrt(1.0 - rho ** 2) + rho * (np.pi - theta)) / (2.0 * np.pi)
    kdot = c_sigma * (np.pi - theta) / (2.0 * np.pi)
    return k, kdot


def arora_cntk(x1, x2=None, depth_L=1, readout="gap", train_first=False, train_last=False, q=3,
               c_sigma=2.0, return_nngp=False):
    """Arora et al.'s CNTK between NHWC images x1 (N1, H, W, C) and x2 (N2, H, W, C).

    depth_L: the number L of conv+ReLU layers (their code's --depth is L + 1).
    readout: "gap" (CNTK-GAP) or "trace" (CNTK-V, fully-connected layer on the flattened map).
    train_first / train_last: whether the first conv layer / the final fully-connected layer are
    trained (their code's --fix yes means both False; the paper's CNTK-GAP).
    return_nngp: also return the matching CNN-GP kernel (readout of K^(L)).
    Returns an (N1, N2) float64 array (and the CNN-GP kernel if asked).
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=np.float64)
    assert x1.ndim == 4 and x2.ndim == 4 and x1.shape[1:] == x2.shape[1:], (x1.shape, x2.shape)
    assert depth_L >= 1 and q % 2 == 1
    n1, h, w, _ = x1.shape
    n2 = x2.shape[0]

    # Sigma^(0): channel sum of the outer product, then the patch trace
    sigma = patch_trace(np.einsum("nijc,mklc->nijmkl", x1, x2), q)
    d1 = patch_trace_diag(np.einsum("nijc,nijc->nij", x1, x1), q)  # Sigma^(0)(x,x)_{p,p}
    d2 = patch_trace_diag(np.einsum("nijc,nijc->nij", x2, x2), q)
    theta = sigma.copy() if train_first else np.zeros_like(sigma)

    for layer in range(1, depth_L + 1):
        s11 = d1[:, :, :, None, None, None]
        s22 = d2[None, None, None, :, :, :]
        k, kdot = relu_expectations(sigma, s11, s22, c_sigma)
        k, kdot = k / q ** 2, kdot / q ** 2  # (c_sigma/q^2) E[...]
        # the diagonal of K^(h)(x, x): rho = 1 there
        k1, _ = relu_expectations(d1, d1, d1, c_sigma)
        k2, _ = relu_expectations(d2, d2, d2, c_sigma)
        k1, k2 = k1 / q ** 2, k2 / q ** 2
        if layer < depth_L:
            theta = patch_trace(kdot * theta + k, q)
            sigma = patch_trace(k, q)
            d1, d2 = patch_trace_diag(k1, q), patch_trace_diag(k2, q)
        else:
            theta = kdot * theta + (k if train_last else 0.0)
            nngp = k

    if readout == "gap":
        out = theta.reshape(n1, h * w, n2, h * w).mean(axis=(1, 3))
        gp = nngp.reshape(n1, h * w, n2, h * w).mean(axis=(1, 3))
    elif readout == "trace":
        t = theta.reshape(n1, h * w, n2, h * w)
        g = nngp.reshape(n1, h * w, n2, h * w)
        out = np.einsum("npmp->nm", t)
        gp = np.einsum("npmp->nm", g)
    else:
        raise ValueError(f"readout must be 'gap' or 'trace', not {readout!r}")
    return (out, gp) if return_nngp else out
