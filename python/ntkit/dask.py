"""ntkit on Dask: kernels computed tile by tile by Dask workers, each tile written by its own task
straight into a Zarr store (tiles never travel through the scheduler), feature maps over row
chunks, and Nyström kernel ridge by preconditioned conjugate gradient over dask arrays.

    from dask.distributed import Client, LocalCluster
    import ntkit, ntkit.dask
    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    net = ntkit.Network("Dense(512), Relu, Dense(512), Relu, Dense(1)", input_shape=(784,))
    run = ntkit.dask.kernel("K.zarr", net, x, tile=2000, client=client)   # infinite-width NTK
    run.array            # a lazy dask.array (N, N) read from the store
    run.computed         # tiles computed by this call (0 when the store was already complete)

With lazy=True nothing is computed by the call: run.array's blocks are the tile tasks themselves,
each computing its tile and writing its chunk when the array (or a part of it) is computed, so a
kernel can feed other dask computations directly.

The store is a Zarr (v2) directory group: the inputs ("x1", "x2"), the parameters ("params/..."),
and "kernel", chunked one tile per chunk; for a symmetric kernel only the tiles on and above the
diagonal are stored (the lower ones are their transposes in the lazy array). Its attributes record
what it is: the network, the parameters' and inputs' hashes, the mode, method, dtype and tile.

Resumable: a tile is final once its chunk file exists (Zarr writes it to a temporary name and
renames it into place), so after a lost worker (Dask reruns its tasks), a lost scheduler or a killed
client, the same call computes only the missing tiles and gives the same bytes. A store of another
kernel is refused, naming what differs.

Threads and memory: Dask's workers run one task per worker thread, and each task here runs the C++
core on `threads_per_task` threads, by default the worker's OMP_NUM_THREADS (Dask's nanny sets it
to 1, and ntkit's own pool follows it rather than taking every core), with the worker's memory
limit shared among its threads as the task's --max-memory. A tile is bit-identical for any thread
count, so the store equals a single-process run with the same tile bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

import dask
import dask.array as da
import zarr

from . import kernels as _kernels
from .network import Network, Params, param_source

FORMAT = "ntkit.dask kernel 1"


def _hash(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str} {a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


def _params_identity(params) -> Tuple[str, Optional[Dict[str, np.ndarray]], Optional[int]]:
    """(identity, arrays to store, seed) of a parameter source."""
    p, seed = param_source(params)
    if seed is not None:
        return f"seed {seed}", None, seed
    if isinstance(p, str):
        with np.load(p) as z:
            p = {k: z[k] for k in z.files}
    return " ".join(f"{k}:{_hash(v)}" for k, v in sorted(p.items())), p, None


@dataclass
class KernelRun:
    """What a call did: the lazy kernel, the store, and the tiles it computed or found."""

    array: da.Array
    store: str
    computed: int
    skipped: int
    tiles: int
    seconds: float
    task_seconds: List[float]


def _kernel_meta(kind: str, net: Optional[Network], n1: int, n2: int, symmetric: bool, tile: int, dtype: str,
                 out_tail: Tuple[int, ...], **extra) -> Dict[str, Any]:
    meta = dict(format=FORMAT, kind=kind, n1=n1, n2=n2, symmetric=symmetric, tile=tile, dtype=dtype,
                tail=list(out_tail))
    if net is not None:
        meta.update(spec=net.spec, describe=net.describe(), input_shape=list(net.input_shape), W_std=net.W_std,
                    b_std=net.b_std, parameterization=net.parameterization)
    meta.update(extra)
    return meta


def _open_store(path: str, meta: Dict[str, Any], inputs: Dict[str, np.ndarray],
                params: Optional[Dict[str, np.ndarray]]) -> zarr.Group:
    """The store at path for this kernel: created with its inputs, or checked to be this kernel's."""
    path = os.fspath(path)
    if os.path.exists(os.path.join(path, ".zgroup")):
        g = zarr.open_group(path, mode="r+")
        there = {k: v for k, v in g.attrs.asdict().items() if k != "complete"}
        here = json.loads(json.dumps(meta))  # as JSON keeps it (tuples become lists)
        if there != here:
            diff = next((k for k in sorted(set(there) | set(here)) if there.get(k) != here.get(k)), "?")
            raise ValueError(f"'{path}' holds another kernel ({diff}: {there.get(diff)!r} there, "
                             f"{here.get(diff)!r} here): give another store, or delete it to start over")
        return g
    if os.path.exists(path) and os.listdir(path):
        raise ValueError(f"'{path}' exists and is not an ntkit kernel store; give a new or empty directory")
    g = zarr.open_group(path, mode="w")
    for name, x in inputs.items():
        g.create_dataset(name, data=np.ascontiguousarray(x), chunks=(min(meta["tile"], max(len(x), 1)),) + x.shape[1:],
                         compressor=None)
    if params is not None:
        pg = g.create_group("params")
        for name, v in params.items():
            pg.create_dataset(name, data=np.ascontiguousarray(v), compressor=None)
    shape = (meta["n1"], meta["n2"], *meta["tail"])
    chunks = (meta["tile"], meta["tile"], *meta["tail"])
    # Every chunk is written, even one equal to the fill value: a chunk's file is the mark that its
    # tile is done.
    g.create_dataset("kernel", shape=shape, chunks=chunks, dtype=meta["dtype"], compressor=None, fill_value=None,
                     write_empty_chunks=True)
    g.attrs.update(meta)  # last: a store with attributes has everything else
    return g


def _tiles(meta: Dict[str, Any]) -> List[Tuple[int, int]]:
    t1 = -(-meta["n1"] // meta["tile"])
    t2 = -(-meta["n2"] // meta["tile"])
    return [(i, j) for i in range(t1) for j in range(t2) if not meta["symmetric"] or i <= j]


def _chunk_done(path: str, i: int, j: int, ndim: int) -> bool:
    key = ".".join(str(v) for v in (i, j) + (0,) * (ndim - 2))
    return os.path.exists(os.path.join(path, "kernel", key))


def _network(meta: Dict[str, Any]) -> Network:
    return Network(meta["spec"], meta["input_shape"], W_std=meta["W_std"], b_std=meta["b_std"],
                   parameterization=meta["parameterization"])


def _task_resources(threads: Optional[int], max_memory) -> Tuple[int, Any]:
    """Threads and memory for one task, as the worker is set: the worker's OMP_NUM_THREADS (Dask's
    nanny makes it 1 unless told otherwise) and its memory limit shared among its task threads."""
    if threads is None:
        try:
            threads = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
        except ValueError:
            threads = 1
    if max_memory is None:
        try:
            from distributed import get_worker
            w = get_worker()
            limit = w.memory_manager.memory_limit
            if limit:
                max_memory = int(limit // max(1, w.state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
    return threads, max_memory


def _compute_tile(path: str, i: int, j: int, threads: Optional[int], max_memory) -> Tuple[int, int, float]:
    """One task: tile (i, j) from the store's inputs, written into its chunk. Runs on a worker."""
    t0 = time.perf_counter()
    threads, max_memory = _task_resources(threads, max_memory)
    g = zarr.open_group(path, mode="r+")
    meta = g.attrs.asdict()
    k = g["kernel"]
    if _chunk_done(path, i, j, k.ndim):  # a rerun of a task whose tile was written meanwhile
        return i, j, 0.0
    t = meta["tile"]
    r1 = slice(i * t, min((i + 1) * t, meta["n1"]))
    r2 = slice(j * t, min((j + 1) * t, meta["n2"]))
    second = "x2" if "x2" in g else "x1"
    x1 = g["x1"][r1]
    x2 = None if (meta["symmetric"] and i == j) else g[second][r2]
    kind = meta["kind"]
    if kind == "features":
        f2 = x1 if x2 is None else x2
        tile = (x1.astype(np.float64) @ f2.astype(np.float64).T).astype(meta["dtype"])
    else:
        net = _network(meta)
        if kind == "empirical":
            params: Params = meta["params_seed"] if meta.get("params_seed") is not None else \
                {name: g["params"][name][...] for name in g["params"].array_keys()}
            tile = _kernels.empirical_ntk(net, params, x1, x2, mode=meta["mode"], method=meta["method"],
                                          dtype=meta["dtype"], tile=t, max_memory=max_memory, threads=threads)
        else:
            tile = _kernels.kernel(net, x1, x2, get=meta["get"], dtype=meta["dtype"], max_memory=max_memory,
                                   threads=threads)
    k[r1, r2] = tile
    return i, j, time.perf_counter() - t0


def open_kernel(store) -> da.Array:
    """The kernel of a store, as a lazy dask.array (lower tiles of a symmetric kernel transposed from
    the upper ones). Raises ValueError if the store is not complete."""
    path = os.fspath(store)
    g = zarr.open_group(path, mode="r")
    meta = g.attrs.asdict()
    if meta.get("format") != FORMAT:
        raise ValueError(f"'{path}' is not an ntkit kernel store")
    missing = [ij for ij in _tiles(meta) if not _chunk_done(path, *ij, g["kernel"].ndim)]
    if missing:
        raise ValueError(f"'{path}' is missing {len(missing)} of {len(_tiles(meta))} tiles (first {missing[0]}); "
                         "run the call that made it again to finish it")
    up = da.from_zarr(g["kernel"])
    if not meta["symmetric"]:
        return up
    t1 = len(up.chunks[0])
    # A lower tile (i, j) is the upper (j, i) with the example axes (and for full the output axes) swapped.
    swap = (1, 0) + tuple(range(up.ndim - 1, 1, -1)) if up.ndim > 2 else (1, 0)
    rows = [da.concatenate([up.blocks[i, j] if i <= j else up.blocks[j, i].transpose(swap) for j in range(t1)], axis=1)
            for i in range(t1)]
    return da.concatenate(rows, axis=0)


def _tile_data(path: str, i: int, j: int, threads: Optional[int], max_memory) -> np.ndarray:
    """Tile (i, j): computed and written into its chunk unless it is there already, then read back."""
    _compute_tile(path, i, j, threads, max_memory)
    g = zarr.open_group(path, mode="r")
    meta = g.attrs.asdict()
    t = meta["tile"]
    return g["kernel"][i * t:min((i + 1) * t, meta["n1"]), j * t:min((j + 1) * t, meta["n2"])]


def _lazy_kernel(path: str, meta: Dict[str, Any], threads: Optional[int], max_memory) -> da.Array:
    """The kernel as a lazy dask.array whose blocks are the tile tasks themselves (each writes its
    chunk when the array is computed; a lower tile of a symmetric kernel is its upper task's
    transpose)."""
    t, n1, n2 = meta["tile"], meta["n1"], meta["n2"]
    tail = tuple(meta["tail"])
    token = dask.base.tokenize(path, json.dumps(meta, sort_keys=True))
    blocks: Dict[Tuple[int, int], da.Array] = {}

    def block(i: int, j: int) -> da.Array:
        if (i, j) not in blocks:
            task = dask.delayed(_tile_data, pure=True)(path, i, j, threads, max_memory,
                                                       dask_key_name=f"ntkit-tile-{token}-{i}-{j}")
            shape = (min(t, n1 - i * t), min(t, n2 - j * t)) + tail
            blocks[i, j] = da.from_delayed(task, shape=shape, dtype=np.dtype(meta["dtype"]))
        return blocks[i, j]

    swap = (1, 0) + tuple(range(1 + len(tail), 1, -1))
    t1, t2 = -(-n1 // t), -(-n2 // t)
    rows = [da.concatenate([block(i, j) if not meta["symmetric"] or i <= j else block(j, i).transpose(swap)
                            for j in range(t2)], axis=1) for i in range(t1)]
    return da.concatenate(rows, axis=0)


def _run(store, meta, inputs, params, client, threads_per_task: int, max_memory_per_task, lazy: bool) -> KernelRun:
    path = os.fspath(store)
    t0 = time.perf_counter()
    g = _open_store(path, meta, inputs, params)
    ndim = g["kernel"].ndim
    tiles = _tiles(meta)
    todo = [ij for ij in tiles if not _chunk_done(path, *ij, ndim)]
    if lazy:  # nothing computed yet: the tiles missing now are computed with the array
        return KernelRun(_lazy_kernel(path, g.attrs.asdict(), threads_per_task, max_memory_per_task), path, len(todo),
                         len(tiles) - len(todo), len(tiles), time.perf_counter() - t0, [])
    tasks = [dask.delayed(_compute_tile, pure=False)(path, i, j, threads_per_task, max_memory_per_task)
             for i, j in todo]
    if client is not None:
        done = client.gather(client.compute(tasks))
    else:
        done = dask.compute(*tasks)
    g.attrs["complete"] = True
    return KernelRun(open_kernel(path), path, len(todo), len(tiles) - len(todo), len(tiles),
                     time.perf_counter() - t0, [s for _, _, s in done])


def _inputs(net: Optional[Network], x1, x2) -> Dict[str, np.ndarray]:
    out = {"x1": np.asarray(x1)}
    if x2 is not None:
        out["x2"] = np.asarray(x2)
    for name, x in out.items():
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"{name} must hold examples along its first axis, got shape {x.shape}")
        if net is not None and tuple(x.shape[1:]) != net.input_shape:
            raise ValueError(f"{name} has shape {x.shape}; the network takes (N, {net.input_shape})")
        if x.dtype.kind != "f" or not np.isfinite(x).all():
            raise ValueError(f"{name} must be finite floats")
    return out


def _check_tile(tile) -> int:
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ValueError(f"tile must be an integer >= 1 (examples per tile side), got {tile!r}")
    return int(tile)


def empirical_ntk(store, net: Network, params: Params, x1, x2=None, *, mode: str = "pntk", method: str = "auto",
                  dtype: str = "float64", tile: int = 1000, client=None, threads_per_task: Optional[int] = None,
                  max_memory_per_task: Union[None, int, str] = None, lazy: bool = False) -> KernelRun:
    """The empirical NTK of `net` at `params` (as ntkit.empirical_ntk, any mode), one Dask task per
    tile of `tile` × `tile` examples (tiles on and above the diagonal when x2 is None), written into
    the Zarr store `store`. Bit-identical to ntkit.empirical_ntk(..., tile=tile) in one process."""
    tile = _check_tile(tile)
    _kernels._check_net(net)
    inputs = _inputs(net, x1, x2)
    identity, arrays, seed = _params_identity(params)
    o = int(np.prod(net.output_shape))
    tail = (o, o) if mode == "full" else (o,) if mode == "diagonal" else ()
    n1 = len(inputs["x1"])
    n2 = len(inputs.get("x2", inputs["x1"]))
    meta = _kernel_meta("empirical", net, n1, n2, x2 is None, tile, dtype, tail, mode=mode, method=method,
                        params=identity, params_seed=seed, x1=_hash(inputs["x1"]),
                        x2=_hash(inputs["x2"]) if x2 is not None else None)
    return _run(store, meta, inputs, arrays, client, threads_per_task, max_memory_per_task, lazy)


def kernel(store, net: Network, x1, x2=None, *, get: str = "ntk", dtype: str = "float64", tile: int = 1000,
           client=None, threads_per_task: Optional[int] = None,
           max_memory_per_task: Union[None, int, str] = None, lazy: bool = False) -> KernelRun:
    """The infinite-width NTK / NNGP of `net` (as ntkit.kernel), one Dask task per tile, written into
    the Zarr store `store`."""
    tile = _check_tile(tile)
    _kernels._check_net(net)
    inputs = _inputs(net, x1, x2)
    n1 = len(inputs["x1"])
    n2 = len(inputs.get("x2", inputs["x1"]))
    meta = _kernel_meta("infinite", net, n1, n2, x2 is None, tile, dtype, (), get=get, x1=_hash(inputs["x1"]),
                        x2=_hash(inputs["x2"]) if x2 is not None else None)
    return _run(store, meta, inputs, None, client, threads_per_task, max_memory_per_task, lazy)


def feature_kernel(store, f1, f2=None, *, dtype: str = "float64", tile: int = 1000, client=None,
                   lazy: bool = False) -> KernelRun:
    """The inner products F1 F2ᵀ of features (N1, m), (N2, m) (e.g. from ntkit.dask.features), one
    Dask task per tile, written into the Zarr store `store`."""
    tile = _check_tile(tile)
    inputs = _inputs(None, np.asarray(f1), None if f2 is None else np.asarray(f2))
    n1 = len(inputs["x1"])
    n2 = len(inputs.get("x2", inputs["x1"]))
    meta = _kernel_meta("features", None, n1, n2, f2 is None, tile, dtype, (), x1=_hash(inputs["x1"]),
                        x2=_hash(inputs["x2"]) if f2 is not None else None)
    return _run(store, meta, inputs, None, client, 1, None, lazy)


def _map_rows(x, block, width: int, dtype, *args) -> da.Array:
    """block(rows, *args) -> (rows, width) over the row chunks of x (the other axes made one chunk)."""
    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x))
    if any(len(c) != 1 for c in x.chunks[1:]):
        x = x.rechunk({d: -1 for d in range(1, x.ndim)})
    drop = tuple(range(2, x.ndim))
    return x.map_blocks(block, *args, dtype=np.dtype(dtype), chunks=(x.chunks[0], (width,)),
                        drop_axis=drop if drop else None, meta=np.empty((0, width), dtype=dtype))


def features(feature_map, x: da.Array) -> da.Array:
    """A fitted ntkit feature map (NTKSketch, NTKRF, CNTKSketch) over the row chunks of a dask array
    (map_blocks): every chunk's features come from the map's one random state, so a chunk computed
    again (a lost worker's) is bit-identical to the first time."""
    if not hasattr(feature_map, "input_shape_"):
        raise ValueError("fit the feature map first (fit(X) records the per-example input shape)")

    def block(b):
        return np.asarray(feature_map.transform(np.ascontiguousarray(b)))

    return _map_rows(x, block, int(feature_map.n_components), np.dtype(feature_map.dtype))


# ---------------------------------------------------------------------------------------------
# Nyström kernel ridge over dask arrays

def kernel_rows(net: Network, x: da.Array, centers, *, get: str = "ntk", dtype: str = "float64",
                threads_per_task: int = 1) -> da.Array:
    """K(X, C) of the infinite-width kernel as a dask array chunked along the rows of x (one task
    per row chunk, each computing its rows against every center): the K_nM of Nyström."""
    _kernels._check_net(net)
    c = np.ascontiguousarray(np.asarray(centers, dtype=np.float64))

    def block(b, cols):
        return np.asarray(_kernels.kernel(net, np.ascontiguousarray(b, dtype=np.float64), cols, get=get, dtype=dtype,
                                          threads=threads_per_task))

    # The centers as one task of the graph that every block depends on, not a copy in each block's.
    cols = dask.delayed(c, name=f"ntkit-centers-{dask.base.tokenize(c)}")
    return _map_rows(x, block, len(c), dtype, cols)


@dataclass
class NystromFit:
    alpha: np.ndarray               # (M, O): f(x) = K(x, C) alpha
    lam: float                      # the absolute regularizer applied
    iterations: int
    residual_history: List[float]   # per iteration, the largest relative residual over outputs


def _upper_cholesky(a: np.ndarray, what: str, first: float, start: float, limit: float) -> Tuple[np.ndarray, float]:
    """U upper with UᵀU = a + jitter I, the jitter growing 10x per try from `first` (as the C++
    solver's factor_with_jitter)."""
    jitter = first
    m = len(a)
    while True:
        try:
            return np.linalg.cholesky(a + jitter * np.eye(m)).T.copy(), jitter
        except np.linalg.LinAlgError:
            if jitter >= limit:
                raise ValueError(f"the Nyström preconditioner could not factor {what} even with a jitter of {jitter}")
            jitter = jitter * 10 if jitter > 0 else start


def nystrom_ridge(k_nm: da.Array, k_mm, y, *, ridge: float, mean_diagonal: Optional[float] = None,
                  tolerance: float = 1e-7, max_iterations: int = 100, client=None) -> NystromFit:
    """Nyström kernel ridge by Falkon's preconditioned conjugate gradient, as the C++ solver
    (ntkit.kernel_ridge with centers), with K_nM a dask array chunked by rows (kept on the workers:
    each CG iteration is one pass over its chunks, K_nMᵀ(K_nM z) summed by a tree reduction) and the
    M × M preconditioner factored here. Solves (K_nMᵀK_nM + λ K_MM) α = K_nMᵀ Y with λ = ridge ·
    mean_diagonal (the mean of diag K over the N examples, for a relative ridge as the C++ solver's)
    or λ = ridge when mean_diagonal is None."""
    from scipy.linalg import solve_triangular

    if not isinstance(k_nm, da.Array):
        k_nm = da.from_array(np.asarray(k_nm))
    n, m = k_nm.shape
    k_mm = np.asarray(k_mm, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if k_mm.shape != (m, m) or y.shape[0] != n:
        raise ValueError(f"K_MM must be ({m}, {m}) and y ({n}, O), got {k_mm.shape} and {y.shape}")
    if not (ridge >= 0 and np.isfinite(ridge)):
        raise ValueError(f"the ridge must be a finite number >= 0, got {ridge}")
    lam = ridge * mean_diagonal if mean_diagonal is not None else ridge
    if len(k_nm.chunks[1]) != 1:
        k_nm = k_nm.rechunk({1: -1})
    if client is not None:
        k_nm = client.persist(k_nm)  # computed once, kept in the workers' memory across iterations
    eps = np.finfo(np.float64).eps
    mean_mm = float(np.mean(np.diag(k_mm)))
    base = m * eps * mean_mm
    t, _ = _upper_cholesky(k_mm, "K_MM", base, base, 1e-2 * mean_mm)
    a_mat = t @ t.T / m + (lam / n) * np.eye(m)
    mean_a = float(np.mean(np.diag(a_mat)))
    start_a = m * eps * mean_a
    a, _ = _upper_cholesky(a_mat, "T Tᵀ/M + λ/N I", 0.0 if lam > 0 else start_a, start_a, 1e-2 * mean_a)
    scale = 1.0 / np.sqrt(n)

    def apply_b(v):
        return solve_triangular(t, solve_triangular(a, v, lower=False), lower=False) * scale

    def apply_bt(v):
        return solve_triangular(a, solve_triangular(t, v, trans="T", lower=False), trans="T", lower=False) * scale

    def compute(expr):
        return client.compute(expr).result() if client is not None else expr.compute()

    b = apply_bt(compute(k_nm.T @ da.from_array(y, chunks=(k_nm.chunks[0], y.shape[1]))))
    o = y.shape[1]
    x = np.zeros((m, o))
    r = b.copy()
    p = b.copy()
    rs = np.einsum("ij,ij->j", r, r)
    b_norm = np.sqrt(rs)
    rel = np.where(b_norm > 0, 1.0, 0.0)
    active = (b_norm > 0) & (rel > tolerance)
    history: List[float] = []
    it = 0
    while it < max_iterations and active.any():
        z = apply_b(p)
        q = compute(k_nm.T @ (k_nm @ z))
        if lam != 0:
            q = q + lam * (k_mm @ z)
        q = apply_bt(q)
        for c in np.nonzero(active)[0]:
            pq = float(p[:, c] @ q[:, c])
            if not pq > 0:
                active[c] = False
                continue
            step = rs[c] / pq
            x[:, c] += step * p[:, c]
            r[:, c] -= step * q[:, c]
            rs_new = float(r[:, c] @ r[:, c])
            rel[c] = np.sqrt(rs_new) / b_norm[c]
            if rel[c] <= tolerance:
                active[c] = False
                continue
            p[:, c] = r[:, c] + (rs_new / rs[c]) * p[:, c]
            rs[c] = rs_new
        it += 1
        history.append(float(rel.max()))
    return NystromFit(apply_b(x), lam, it, history)


def feature_ridge(f: da.Array, y, *, ridge: float, relative: bool = True, client=None) -> Tuple[np.ndarray, float]:
    """Ridge regression on distributed features F (N, m), a dask array chunked by rows: FᵀF and FᵀY
    summed over the chunks on the workers (a tree reduction of per-chunk products), then (FᵀF + λI) W
    = FᵀY solved here by Cholesky. λ = ridge · trace(FᵀF)/N when relative (mean ‖f_i‖², as
    ntkit.feature_ridge), else ridge. Returns (W (m, O), λ)."""
    if not isinstance(f, da.Array):
        f = da.from_array(np.asarray(f))
    if len(f.chunks[1]) != 1:
        f = f.rechunk({1: -1})
    n, m = f.shape
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != n:
        raise ValueError(f"y must have {n} rows (the features'), got {y.shape}")
    if not (ridge >= 0 and np.isfinite(ridge)):
        raise ValueError(f"the ridge must be a finite number >= 0, got {ridge}")
    f64 = f.astype(np.float64)
    yd = da.from_array(y, chunks=(f.chunks[0], y.shape[1]))
    if client is not None:
        gram, fty = client.gather(client.compute([f64.T @ f64, f64.T @ yd]))
    else:
        gram, fty = dask.compute(f64.T @ f64, f64.T @ yd)
    gram = (gram + gram.T) / 2
    lam = ridge * np.trace(gram) / n if relative else ridge
    c = np.linalg.cholesky(gram + lam * np.eye(m))
    w = np.linalg.solve(c.T, np.linalg.solve(c, fty))
    return w, float(lam)
