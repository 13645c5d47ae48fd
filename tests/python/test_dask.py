"""ntkit.dask (issue 17) on a LocalCluster of 2 worker processes: kernels tile by tile into a Zarr
store equal the single-process results bit for bit; a worker killed mid-run, or the whole client
(scheduler and workers with it) killed and the call made again, still gives the same bytes, the
second call computing only the missing tiles; feature maps over row chunks equal one transform."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import ntkit

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
import ntkit.dask as nd  # noqa: E402

CNN = "Conv(8, 3, padding=SAME), Relu, Conv(8, 3, padding=SAME), Relu, GlobalAvgPool, Dense(3)"


@pytest.fixture(scope="module")
def client():
    # Dask's nanny sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, ... = 1 in this process's own
    # environment for the workers it spawns; the other test modules' subprocesses must not inherit them.
    environ = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
    os.environ.clear()
    os.environ.update(environ)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((70, 8, 8, 3))


@pytest.fixture(scope="module")
def cnn():
    return ntkit.Network(CNN, input_shape=(8, 8, 3))


@pytest.mark.parametrize("mode", ["full", "pntk"])
def test_distributed_entk_equals_one_process_bit_for_bit(client, tmp_path, images, cnn, mode):
    run = nd.empirical_ntk(tmp_path / "k.zarr", cnn, 0, images, mode=mode, dtype="float64", tile=16, client=client)
    assert (run.computed, run.skipped, run.tiles) == (15, 0, 15)  # 5 x 5 tiles, the upper 15
    k = ntkit.empirical_ntk(cnn, 0, images, mode=mode, dtype="float64", tile=16)
    got = run.array.compute()
    assert got.dtype == k.dtype and got.shape == k.shape
    assert np.array_equal(got, k)
    # The store says what it holds, and the same call finds it complete.
    attrs = zarr.open_group(str(tmp_path / "k.zarr"), mode="r").attrs.asdict()
    assert attrs["mode"] == mode and attrs["tile"] == 16 and attrs["spec"] == CNN and attrs["params"] == "seed 0"
    again = nd.empirical_ntk(tmp_path / "k.zarr", cnn, 0, images, mode=mode, dtype="float64", tile=16, client=client)
    assert (again.computed, again.skipped) == (0, 15)


def test_rectangular_and_parameter_dict_kernels(client, tmp_path, images, cnn):
    params = cnn.init(3, dtype="float64")
    run = nd.empirical_ntk(tmp_path / "k.zarr", cnn, params, images[:40], images[40:], mode="pntk", tile=16,
                           client=client)
    assert run.tiles == 3 * 2
    assert np.array_equal(run.array.compute(),
                          ntkit.empirical_ntk(cnn, params, images[:40], images[40:], mode="pntk", dtype="float64",
                                              tile=16))


def test_infinite_and_feature_kernels_equal_one_process(client, tmp_path):
    rng = np.random.default_rng(1)
    v = rng.random((150, 16))
    net = ntkit.Network("Dense(64), Relu, Dense(64), Relu, Dense(1)", input_shape=(16,))
    run = nd.kernel(tmp_path / "inf.zarr", net, v, tile=64, client=client)
    k = ntkit.kernel(net, v)
    assert np.array_equal(run.array.compute(), k)  # the last diagonal tile is 22 examples
    f = rng.random((90, 32))
    run = nd.feature_kernel(tmp_path / "f.zarr", f, tile=32, client=client)
    np.testing.assert_allclose(run.array.compute(), f @ f.T, rtol=1e-13)


def test_feature_maps_over_row_chunks(client):
    import dask.array as da
    x = np.random.default_rng(2).random((300, 16))
    fm = ntkit.NTKRF(n_components=128, depth=2, random_state=5).fit(x)
    chunked = nd.features(fm, da.from_array(x, chunks=100))
    assert chunked.shape == (300, 128) and chunked.chunks[0] == (100, 100, 100)
    got = client.compute(chunked).result()
    # A chunk's features are the map's on those rows: the same as transforming the chunk alone, on
    # any worker and any time it is recomputed.
    for i in range(3):
        assert np.array_equal(got[i * 100:(i + 1) * 100], fm.transform(x[i * 100:(i + 1) * 100]))
    np.testing.assert_allclose(got, fm.transform(x), rtol=1e-12, atol=1e-14)


def test_another_kernel_in_the_store_is_refused(client, tmp_path, images, cnn):
    nd.empirical_ntk(tmp_path / "k.zarr", cnn, 0, images[:20], mode="pntk", tile=16, client=client)
    with pytest.raises(ValueError, match="another kernel .*mode"):
        nd.empirical_ntk(tmp_path / "k.zarr", cnn, 0, images[:20], mode="trace", tile=16, client=client)
    with pytest.raises(ValueError, match="another kernel .*x1"):
        nd.empirical_ntk(tmp_path / "k.zarr", cnn, 0, images[1:21], mode="pntk", tile=16, client=client)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a").write_text("x")
    with pytest.raises(ValueError, match="not an ntkit kernel store"):
        nd.empirical_ntk(tmp_path / "junk", cnn, 0, images[:20], mode="pntk", tile=16, client=client)
    with pytest.raises(ValueError, match="tile"):
        nd.empirical_ntk(tmp_path / "k2.zarr", cnn, 0, images[:20], tile=0, client=client)


def _chunks_on_disk(store):
    d = os.path.join(store, "kernel")
    return [f for f in os.listdir(d) if not f.startswith(".") and not f.endswith(".partial")] if os.path.isdir(d) else []


# A pNTK heavy enough (55 tiles of tens of milliseconds) to be interrupted in the middle.
HEAVY = "Conv(16, 3, padding=SAME), Relu, Conv(16, 3, padding=SAME), Relu, GlobalAvgPool, Dense(4)"


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    x = np.random.default_rng(3).random((200, 8, 8, 3))
    net = ntkit.Network(HEAVY, input_shape=(8, 8, 3))
    ref = ntkit.empirical_ntk(net, 0, x, mode="pntk", dtype="float64", tile=20)
    d = tmp_path_factory.mktemp("heavy")
    np.save(d / "x.npy", x)
    return net, x, ref, d / "x.npy"


def test_a_worker_killed_mid_run_still_gives_the_same_bytes(client, tmp_path, heavy):
    net, x, ref, _ = heavy
    store = str(tmp_path / "k.zarr")
    result = {}
    t = threading.Thread(target=lambda: result.update(
        run=nd.empirical_ntk(store, net, 0, x, mode="pntk", dtype="float64", tile=20, client=client)))
    t.start()
    deadline = time.monotonic() + 60
    while len(_chunks_on_disk(store)) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    pids = client.run(os.getpid)  # worker address -> pid
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    t.join(timeout=300)
    assert not t.is_alive()
    run = result["run"]
    assert run.tiles == 55 and len(_chunks_on_disk(store)) == 55
    assert np.array_equal(run.array.compute(), ref)


CLIENT_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, ntkit, ntkit.dask as nd
    from distributed import Client, LocalCluster
    if __name__ == "__main__":
        store, xpath = sys.argv[1], sys.argv[2]
        c = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
        net = ntkit.Network(%r, input_shape=(8, 8, 3))
        run = nd.empirical_ntk(store, net, 0, np.load(xpath), mode="pntk", dtype="float64", tile=20, client=c)
        print(run.computed, run.skipped)
""" % HEAVY)


def test_a_killed_client_rerun_computes_only_the_missing_tiles(tmp_path, heavy):
    net, x, ref, xpath = heavy
    store = str(tmp_path / "k.zarr")
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    # The client, its scheduler and workers in one process group: killed together, as a lost node.
    p = subprocess.Popen([sys.executable, str(script), store, str(xpath)], start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_chunks_on_disk(store)) < 8 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(0.5)
    done = len(_chunks_on_disk(store))
    assert 8 <= done < 55, done
    r = subprocess.run([sys.executable, str(script), store, str(xpath)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    computed, skipped = map(int, r.stdout.split()[-2:])
    assert skipped >= done and computed + skipped == 55 and computed <= 55 - done
    assert np.array_equal(nd.open_kernel(store).compute(), ref)


def test_nystrom_on_dask_arrays_equals_the_in_process_solver(client, tmp_path):
    """Falkon's PCG with K_nM a row-chunked dask array on the workers against the C++ solver on the
    same centers (ntkit.kernel_ridge with center_indices), and against a dense solve of the Nyström
    normal equations (K_nMᵀK_nM + λ K_MM) α = K_nMᵀ y."""
    import dask.array as da
    rng = np.random.default_rng(4)
    n, m = 600, 80
    x = rng.standard_normal((n, 12))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    net = ntkit.Network("Dense(64), Relu, Dense(64), Relu, Dense(1)", input_shape=(12,))
    centers = np.sort(rng.choice(n, m, replace=False))
    k = ntkit.kernel(net, x)
    k_nm = nd.kernel_rows(net, da.from_array(x, chunks=150), x[centers])
    assert k_nm.chunks == ((150,) * 4, (m,))
    ridge = 1e-4
    fit = nd.nystrom_ridge(k_nm, k[np.ix_(centers, centers)], y, ridge=ridge, mean_diagonal=float(np.mean(np.diag(k))),
                           tolerance=1e-13, max_iterations=500, client=client)
    assert fit.iterations > 3 and fit.residual_history[-1] <= 1e-13
    np.save(tmp_path / "k.npy", k)
    ref = ntkit.kernel_ridge(str(tmp_path / "k.npy"), y, str(tmp_path / "k.npy"), ridge=ridge, center_indices=centers,
                             tolerance=1e-13, max_iterations=500)
    pred = k[:, centers] @ fit.alpha
    assert np.abs(pred - ref.predictions).max() <= 1e-8 * np.abs(ref.predictions).max()
    knm = k[:, centers]
    dense = np.linalg.solve(knm.T @ knm + fit.lam * k[np.ix_(centers, centers)], knm.T @ y)
    np.testing.assert_allclose(knm @ fit.alpha, knm @ dense, rtol=0, atol=1e-8 * np.abs(knm @ dense).max())


def test_ridge_on_distributed_features_equals_the_in_process_solver(client):
    import dask.array as da
    rng = np.random.default_rng(5)
    x = rng.random((500, 10))
    y = np.stack([x[:, 0] - x[:, 1], np.cos(3 * x[:, 2])], axis=1)
    f = ntkit.NTKRF(n_components=96, depth=2, random_state=1, dtype="float64").fit(x).transform(x)
    w, lam = nd.feature_ridge(da.from_array(f, chunks=128), y, ridge=1e-3, client=client)
    ref = ntkit.feature_ridge(f, y, f, ridge=1e-3)
    np.testing.assert_allclose(f @ w, ref.predictions, rtol=0, atol=1e-9 * np.abs(ref.predictions).max())
    assert lam == pytest.approx(ref.report["lambda"], rel=1e-12)


def test_tasks_follow_the_workers_thread_setting(client, monkeypatch):
    # Dask's nanny starts workers with OMP_NUM_THREADS=1; a task runs ntkit on that many threads,
    # with the worker's memory limit shared among its task threads as its budget.
    threads = client.run(lambda: nd._task_resources(None, None)[0])
    assert set(threads.values()) == {1}
    budgets = client.run(lambda: nd._task_resources(None, None)[1])
    assert all(b is None or b > 0 for b in budgets.values())
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert nd._task_resources(None, "1G") == (3, "1G")
    assert nd._task_resources(2, None)[0] == 2


def test_a_lazy_kernel_computes_and_stores_its_tiles_when_computed(client, tmp_path, images, cnn):
    store = str(tmp_path / "k.zarr")
    run = nd.empirical_ntk(store, cnn, 0, images, mode="full", dtype="float64", tile=16, client=client, lazy=True)
    assert run.computed == 15 and _chunks_on_disk(store) == []  # nothing computed by the call
    k = ntkit.empirical_ntk(cnn, 0, images, mode="full", dtype="float64", tile=16)
    part = client.compute(run.array[:16, 20:40]).result()  # two tiles' worth: only those tasks run
    assert np.array_equal(part, k[:16, 20:40]) and len(_chunks_on_disk(store)) == 2
    assert np.array_equal(client.compute(run.array).result(), k)
    assert len(_chunks_on_disk(store)) == 15
    assert np.array_equal(nd.open_kernel(store).compute(), k)
