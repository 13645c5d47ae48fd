"""Resumable jobs (issue 16): a kernel or features job killed with SIGKILL at any point and rerun
with --resume gives the bytes of an uninterrupted run, and recomputes only what was unfinished.

Each resumable subcommand (entk, kernel, features, and regress's out-of-core solvers: Nyström on a
memory-mapped kernel recomputing K(X, C) per iteration, ridge on features accumulating FᵀF) is killed
  - at fixed points through the fault hook NTK_FAULT_POINT (src/checkpoint.hpp): after a band's
    data is synced but before its record, after the record, before and after the final rename;
  - at random instants (seeded) while it runs, by the test's SIGKILL;
then resumed and compared byte for byte with an uninterrupted run. Refusals are checked too: a
checkpoint of another job, and an interrupted run rerun without --resume.
"""
import os
import random
import signal
import subprocess
import time

import numpy as np
import pytest

import ntkit

CNN = "Conv(16, 3, padding=SAME), Relu, Conv(16, 3, padding=SAME), Relu, GlobalAvgPool, Dense(4)"


def _jobs(tmp_path):
    """(name, argv without -o, rows) of each resumable subcommand, sized for several bands."""
    rng = np.random.default_rng(0)
    x = tmp_path / "x.npy"
    np.save(x, rng.random((96, 8, 8, 1), dtype=np.float32))
    v = tmp_path / "v.npy"
    np.save(v, rng.random((3000, 16)))
    return [
        ("entk", ["entk", "--net", CNN, "--seed", "0", "--x1", str(x), "--mode", "full", "--tile", "16",
                  "--out-of-core", "--threads", "2"], 96),
        # 3000 x 3000 float64 in bands of ~900 rows: 300M less the working memory.
        ("kernel", ["kernel", "--net", "Dense(64), Relu, Dense(64), Relu, Dense(1)", "--x1", str(v), "--out-of-core",
                    "--max-memory", "300M"], 3000),
        # dim 8192: batches of 2048 rows, two of them.
        ("features", ["features", "--sketch", "ntkrf", "--depth", "2", "--dim", "8192", "-x", str(v)], 3000),
    ]


def _run(ntk_bin, argv, out, env=None, check=True):
    r = subprocess.run([str(ntk_bin), *argv, "-o", str(out), "-q"], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _leftovers(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name + "."))


@pytest.fixture(scope="module")
def references(ntk_bin, tmp_path_factory):
    """Each job's uninterrupted output bytes."""
    d = tmp_path_factory.mktemp("reference")
    refs = {}
    for name, argv, rows in _jobs(d):
        out = d / f"{name}.npy"
        _run(ntk_bin, argv, out)
        refs[name] = (argv, rows, out.read_bytes())
    return refs


@pytest.mark.parametrize("job", ["entk", "kernel", "features"])
@pytest.mark.parametrize("point", ["band-synced:1", "band-recorded:1", "band-synced:2", "before-rename",
                                   "after-rename"])
def test_killed_at_a_fault_point_resumes_to_the_same_bytes(ntk_bin, references, tmp_path, job, point):
    argv, rows, expected = references[job]
    out = tmp_path / "out.npy"
    killed = _run(ntk_bin, argv, out, env={"NTK_FAULT_POINT": point}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    record = out.parent / (out.name + ".ntk-checkpoint")
    if point == "band-synced:1":
        # Killed between the first band's data and its record: nothing recorded, nothing to keep.
        assert not record.exists()
    else:
        assert record.exists(), _leftovers(out)
    # A kill inside an atomic write leaves its temporary file: the resumed run removes those of its
    # own files (and only those).
    (out.parent / (out.name + ".ntk-checkpoint.tmp.a1b2c3")).write_bytes(b"half a record")
    (out.parent / "unrelated.npy.tmp.a1b2c3").write_bytes(b"not ours")
    resumed = subprocess.run([str(ntk_bin), *argv, "-o", str(out), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert (out.parent / "unrelated.npy.tmp.a1b2c3").exists()
    (out.parent / "unrelated.npy.tmp.a1b2c3").unlink()
    if point.startswith("band-recorded") or point.startswith("band-synced:2") or point == "before-rename":
        assert "resumed at row" in resumed.stdout, resumed.stdout
    assert out.read_bytes() == expected
    assert _leftovers(out) == [], "the partial file and the checkpoint are gone once the output is in place"


@pytest.mark.parametrize("job", ["entk", "features"])
def test_killed_at_random_instants_resumes_to_the_same_bytes(ntk_bin, references, tmp_path, job):
    argv, rows, expected = references[job]
    out = tmp_path / "out.npy"
    rng = random.Random(16)
    # Kills at instants inside a run's measured duration (start-up included).
    t0 = time.monotonic()
    _run(ntk_bin, argv, tmp_path / "timing.npy")
    duration = time.monotonic() - t0
    for attempt in range(3):
        p = subprocess.Popen([str(ntk_bin), *argv, "-o", str(out), "-q", *(["--resume"] if attempt else [])],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 0.9) * duration)
        p.send_signal(signal.SIGKILL)
        p.wait()
    final = subprocess.run([str(ntk_bin), *argv, "-o", str(out), "--resume"], capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert out.read_bytes() == expected
    assert _leftovers(out) == []


def test_resume_recomputes_only_unfinished_bands(ntk_bin, references, tmp_path):
    argv, rows, expected = references["entk"]
    out = tmp_path / "out.npy"
    _run(ntk_bin, argv, out, env={"NTK_FAULT_POINT": "band-recorded:4"}, check=False)
    # Bands of 16 rows: four recorded, so the resumed run starts at row 64 and counts only the pairs
    # of rows 64..95 of the upper triangle in its progress.
    seen = []
    ntkit_out = tmp_path / "api.npy"
    (tmp_path / "api.npy.ntk-checkpoint").write_bytes((out.parent / (out.name + ".ntk-checkpoint")).read_bytes())
    (tmp_path / "api.npy.partial").write_bytes((out.parent / (out.name + ".partial")).read_bytes())
    x = np.load(argv[argv.index("--x1") + 1])
    net = ntkit.Network(CNN, input_shape=x.shape[1:])
    k = ntkit.empirical_ntk(net, 0, x, mode="full", tile=16, out=ntkit_out, resume=True, threads=2,
                            progress=lambda done, total: seen.append((done, total)))
    total = rows * (rows + 1) // 2
    first_row_pairs = sum(rows - r for r in range(64))
    assert seen[0][0] > first_row_pairs and seen[-1] == (total, total)
    assert len(seen) == sum(1 for i0 in range(64, rows, 16) for _ in range(i0, rows, 16))
    assert ntkit_out.read_bytes() == expected
    assert k.shape == (rows, rows, 4, 4)


def test_checkpoint_of_another_job_is_refused(ntk_bin, references, tmp_path):
    argv, _, _ = references["entk"]
    out = tmp_path / "out.npy"
    _run(ntk_bin, argv, out, env={"NTK_FAULT_POINT": "band-recorded:2"}, check=False)
    other = [a if a != "0" else "1" for a in argv]  # --seed 1: other parameters
    r = subprocess.run([str(ntk_bin), *other, "-o", str(out), "--resume"], capture_output=True, text=True)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "different job" in lines[0] and "parameters" in lines[0]
    # Without --resume, the interrupted run's work is not overwritten either.
    r = subprocess.run([str(ntk_bin), *argv, "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and "add --resume" in r.stderr
    assert not out.exists() and _leftovers(out) == ["out.npy.ntk-checkpoint", "out.npy.partial"]


def test_damaged_checkpoint_or_partial_is_refused(ntk_bin, references, tmp_path):
    argv, _, expected = references["entk"]
    out = tmp_path / "out.npy"
    _run(ntk_bin, argv, out, env={"NTK_FAULT_POINT": "band-recorded:2"}, check=False)
    record = out.parent / (out.name + ".ntk-checkpoint")
    partial = out.parent / (out.name + ".partial")
    text = record.read_text()
    record.write_text(text.replace("rows: 32 of 96", "rows: 32 of many"))
    r = subprocess.run([str(ntk_bin), *argv, "-o", str(out), "--resume"], capture_output=True, text=True)
    assert r.returncode == 1 and "is damaged" in r.stderr and "delete it" in r.stderr
    record.write_text(text)
    with open(partial, "r+b") as f:
        f.truncate(1000)
    r = subprocess.run([str(ntk_bin), *argv, "-o", str(out), "--resume"], capture_output=True, text=True)
    assert r.returncode == 1 and "cannot resume" in r.stderr
    partial.unlink()
    record.unlink()
    _run(ntk_bin, argv, out)
    assert out.read_bytes() == expected


def test_resume_without_checkpoint_starts_afresh_and_python_checks_out(ntk_bin, references, tmp_path):
    argv, _, expected = references["kernel"]
    out = tmp_path / "k.npy"
    r = subprocess.run([str(ntk_bin), *argv, "-o", str(out), "--resume"], capture_output=True, text=True)
    assert r.returncode == 0 and "resumed" not in r.stdout
    assert out.read_bytes() == expected
    net = ntkit.Network("Dense(4), Relu, Dense(1)", input_shape=(3,))
    with pytest.raises(ValueError, match="give its out="):
        ntkit.kernel(net, np.zeros((2, 3)), resume=True)


# ---------------------------------------------------------------------------------------------
# regress: the solvers' state (OUT.ntk-state) instead of a partial output

@pytest.fixture(scope="module")
def regress_jobs(ntk_bin, tmp_path_factory):
    """(argv without -o, uninterrupted test and train prediction bytes) of Nyström and features."""
    d = tmp_path_factory.mktemp("regress")
    rng = np.random.default_rng(1)
    np.save(d / "x.npy", rng.random((3000, 16)))
    np.save(d / "xt.npy", rng.random((500, 16)))
    np.save(d / "y.npy", rng.integers(0, 4, 3000))
    np.save(d / "yt.npy", rng.integers(0, 4, 500))
    np.save(d / "f.npy", rng.random((3000, 256), dtype=np.float32))
    np.save(d / "ft.npy", rng.random((500, 256), dtype=np.float32))
    net = "Dense(64), Relu, Dense(64), Relu, Dense(1)"
    _run(ntk_bin, ["kernel", "--net", net, "--x1", str(d / "x.npy")], d / "K.npy")
    _run(ntk_bin, ["kernel", "--net", net, "--x1", str(d / "xt.npy"), "--x2", str(d / "x.npy")], d / "KT.npy")
    common = ["regress", "--y-train", str(d / "y.npy"), "--y-test", str(d / "yt.npy"), "--checkpoint-seconds", "0"]
    jobs = {
        # K_nM (9.2 MiB) over the budget's share: recomputed in blocks of 675 rows in every one of
        # about 40 CG iterations, a state saved after each block (about 200 in all).
        "nystrom": common + ["--k-train", str(d / "K.npy"), "--k-test", str(d / "KT.npy"), "--centers", "400",
                             "--ridge", "1e-6", "--tolerance", "1e-12", "--max-iterations", "300", "--max-memory", "72M"],
        # FᵀF over batches of 128 rows, the ridge chosen on the last 300 (batches straddle the split).
        "features": common + ["--f-train", str(d / "f.npy"), "--f-test", str(d / "ft.npy"), "--ridge", "auto",
                              "--batch-rows", "128"],
    }
    out = {}
    for name, argv in jobs.items():
        test, train = d / f"{name}.npy", d / f"{name}-train.npy"
        _run(ntk_bin, [*argv, "--train-predictions", str(train)], test)
        out[name] = (argv, test.read_bytes(), train.read_bytes())
    return out


def _regress(ntk_bin, argv, out, extra=(), env=None):
    train = out.parent / (out.stem + "-train.npy")
    return subprocess.run([str(ntk_bin), *argv, "--train-predictions", str(train), "-o", str(out), *extra],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}), train


@pytest.mark.parametrize("job", ["nystrom", "features"])
@pytest.mark.parametrize("point", ["state-saved:1", "state-saved:7", "state-saved:20", "before-rename", "after-rename"])
def test_regress_killed_at_a_fault_point_resumes_to_the_same_bytes(ntk_bin, regress_jobs, tmp_path, job, point):
    argv, test_bytes, train_bytes = regress_jobs[job]
    out = tmp_path / "pred.npy"
    state = tmp_path / "pred.npy.ntk-state"
    killed, _ = _regress(ntk_bin, argv, out, env={"NTK_FAULT_POINT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert state.exists()
    # A rerun without --resume would throw the state away: refused, and the state stays.
    again, _ = _regress(ntk_bin, argv, out)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "add --resume" in again.stderr, again.stderr
    assert state.exists()
    for stale in ("pred.npy.ntk-state.tmp.0a0b0c", "pred.npy.tmp.123456", "pred-train.npy.tmp.fedcba"):
        (tmp_path / stale).write_bytes(b"a write cut short")
    resumed, train = _regress(ntk_bin, argv, out, extra=["--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at " in resumed.stdout
    assert out.read_bytes() == test_bytes and train.read_bytes() == train_bytes
    assert not state.exists()
    assert _leftovers(out) == [] and _leftovers(train) == []


def test_regress_killed_at_random_instants_resumes_to_the_same_bytes(ntk_bin, regress_jobs, tmp_path):
    argv, test_bytes, train_bytes = regress_jobs["nystrom"]
    out = tmp_path / "pred.npy"
    rng = random.Random(17)
    t0 = time.monotonic()
    _regress(ntk_bin, argv, tmp_path / "timing.npy")
    duration = time.monotonic() - t0
    train = out.parent / "pred-train.npy"
    for attempt in range(3):
        p = subprocess.Popen([str(ntk_bin), *argv, "--train-predictions", str(train), "-o", str(out), "-q",
                              *(["--resume"] if attempt else [])], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 0.9) * duration)
        p.send_signal(signal.SIGKILL)
        p.wait()
    final, _ = _regress(ntk_bin, argv, out, extra=["--resume"])
    assert final.returncode == 0, final.stderr
    assert out.read_bytes() == test_bytes and train.read_bytes() == train_bytes
    assert _leftovers(out) == [] and _leftovers(train) == []


def test_regress_state_of_another_job_or_damaged_is_refused(ntk_bin, regress_jobs, tmp_path):
    argv, test_bytes, _ = regress_jobs["nystrom"]
    out = tmp_path / "pred.npy"
    state = tmp_path / "pred.npy.ntk-state"
    _regress(ntk_bin, argv, out, env={"NTK_FAULT_POINT": "state-saved:30"})
    other = [a if a != "1e-6" else "1e-5" for a in argv]  # another ridge
    r, _ = _regress(ntk_bin, other, out, extra=["--resume"])
    assert r.returncode == 1 and "different job" in r.stderr and "options" in r.stderr, r.stderr
    data = bytearray(state.read_bytes())
    data[-5] ^= 0x10
    state.write_bytes(bytes(data))
    r, _ = _regress(ntk_bin, argv, out, extra=["--resume"])
    assert r.returncode == 1 and "is damaged" in r.stderr and "hash" in r.stderr, r.stderr
    state.unlink()
    r, _ = _regress(ntk_bin, argv, out, extra=["--resume"])  # nothing to resume: a fresh solve
    assert r.returncode == 0 and "resumed" not in r.stdout
    assert out.read_bytes() == test_bytes
    # --resume of a solve that keeps no state, or without an output to keep it beside.
    exact = ["regress", "--k-train", argv[argv.index("--k-train") + 1], "--y-train", argv[argv.index("--y-train") + 1]]
    r = subprocess.run([str(ntk_bin), *exact, "--resume", "--train-predictions", str(tmp_path / "t.npy")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "exact solve starts over" in r.stderr, r.stderr
    r = subprocess.run([str(ntk_bin), *argv, "--resume"], capture_output=True, text=True)
    assert r.returncode == 1 and "give the output" in r.stderr, r.stderr


def test_python_resumes_what_the_cli_left(ntk_bin, regress_jobs, tmp_path):
    """ntkit.kernel_ridge / feature_ridge continue a state the CLI saved (the same job, by content)."""
    for job, fit in (("nystrom", ntkit.kernel_ridge), ("features", ntkit.feature_ridge)):
        argv, test_bytes, _ = regress_jobs[job]
        out = tmp_path / f"{job}.npy"
        _regress(ntk_bin, argv, out, env={"NTK_FAULT_POINT": "state-saved:5"})
        arg = lambda flag: argv[argv.index(flag) + 1]  # noqa: E731
        common = dict(y_test=arg("--y-test"), out=out, resume=True, checkpoint_seconds=0)
        if job == "nystrom":
            r = fit(arg("--k-train"), arg("--y-train"), arg("--k-test"), centers=400, ridge=1e-6, tolerance=1e-12,
                    max_iterations=300, max_memory="72M", **common)
        else:
            r = fit(arg("--f-train"), arg("--y-train"), arg("--f-test"), ridge="auto", batch_rows=128, **common)
        assert r.report.get("resumed_at", "").startswith(("the right-hand side", "row "))
        assert out.read_bytes() == test_bytes
        assert not (tmp_path / f"{job}.npy.ntk-state").exists()
