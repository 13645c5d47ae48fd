"""The bad-input suite (issue 16): hostile or mistaken inputs to every subcommand and to the Python
API. Each CLI case must exit with status 1 (the job failed) or 2 (usage), print exactly one line,
"error: ..." that says what is wrong, and leave no output file (nor any temporary beside it); each
Python case must raise the mapped exception (ValueError for invalid arguments, OSError for files,
MemoryError for budgets, NotImplementedError for what is not supported, ArithmeticError for
non-finite results), never crash or return NaN.

docs/failure-modes.md lists what is handled and how; this file is its executable half.
"""
import os
import resource
import signal
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ntkit

MLP = "Dense(8, b_std=0.1), Relu, Dense(3)"
CNN = "Conv(4, 3, padding=SAME), Relu, GlobalAvgPool, Dense(2)"


@pytest.fixture(scope="module")
def files(ntk_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(1)
    f = {}

    def save(name, a):
        f[name] = d / f"{name}.npy"
        np.save(f[name], a)

    save("x", rng.random((6, 5), dtype=np.float32))
    save("x4", rng.random((6, 4), dtype=np.float32))
    save("img", rng.random((4, 5, 5, 1), dtype=np.float32))
    x = rng.random((6, 5)).astype(np.float32)
    x[2, 3] = np.nan
    save("x_nan", x)
    x = rng.random((6, 5)).astype(np.float32)
    x[0, 0] = np.inf
    save("x_inf", x)
    save("x_empty", np.zeros((0, 5), np.float32))
    save("x_complex", np.zeros((6, 5), np.complex64))
    save("x_1d", np.zeros(5, np.float32))
    save("x_big", rng.random((6, 5)) * 1e300)  # finite, but features of it overflow
    # A header declaring 10^12 rows over a few bytes of data.
    raw = (d / "x.npy").read_bytes()
    f["x_huge"] = d / "x_huge.npy"
    f["x_huge"].write_bytes(raw.replace(b"(6, 5)", b"(1000000000000, 5)", 1))
    f["x_trunc"] = d / "x_trunc.npy"
    f["x_trunc"].write_bytes(raw[: len(raw) - 17])
    f["random"] = d / "random.npy"
    f["random"].write_bytes(rng.bytes(4096))
    f["text"] = d / "text.npy"
    f["text"].write_text("these are not the numbers you are looking for\n")
    # Parameters of the MLP, of another network, truncated, with a NaN, missing a key.
    f["params"] = d / "params.npz"
    subprocess.run([str(ntk_bin), "init", "--net", MLP, "--input-shape", "5", "--seed", "0", "-o", str(f["params"]),
                    "-q"], check=True)
    f["params_other"] = d / "params_other.npz"
    subprocess.run([str(ntk_bin), "init", "--net", "Dense(9), Relu, Dense(3)", "--input-shape", "5", "--seed", "0",
                    "-o", str(f["params_other"]), "-q"], check=True)
    data = f["params"].read_bytes()
    f["params_trunc"] = d / "params_trunc.npz"
    f["params_trunc"].write_bytes(data[: len(data) // 2])
    p = dict(np.load(f["params"]))
    key = sorted(p)[0]
    p_nan = dict(p)
    p_nan[key] = p_nan[key].copy()
    p_nan[key].flat[0] = np.nan
    f["params_nan"] = d / "params_nan.npz"
    np.savez(f["params_nan"], **p_nan)
    f["params_missing"] = d / "params_missing.npz"
    np.savez(f["params_missing"], **{k: v for k, v in p.items() if k != key})
    # Kernels and targets for regress / spectrum / compare.
    a = rng.random((6, 6))
    save("K", a @ a.T + np.eye(6))
    save("KT", rng.random((3, 6)))
    save("KT_bad", rng.random((3, 7)))
    save("K_rect", rng.random((6, 5)))
    k = a @ a.T
    k[1, 1] = np.nan
    save("K_nan", k)
    k = a @ a.T
    k[0, 2] = k[2, 0] = np.inf
    save("K_inf", k)
    save("y", rng.random((6, 2)))
    save("y_short", rng.random((5, 2)))
    save("labels", np.array([0, 1, 2, 1, 0, 2], np.int64))
    save("labels_neg", np.array([0, 1, -2, 1, 0, 2], np.int64))
    f["labels_idx_trunc"] = d / "labels-idx1-ubyte"
    f["labels_idx_trunc"].write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x06" + bytes([0, 1, 2]))
    f["dir"] = d
    return f


def _cases(f, out):
    """(id, argv) of each CLI case; out is the output path the case must not create."""
    o = ["-o", str(out)]
    mlp = ["--net", MLP]
    entk = ["entk", *mlp, "--params", str(f["params"]), "--x1", str(f["x"])]

    def regress(k, kt, y, *rest):
        return ["regress", "--k-train", str(f[k]), "--k-test", str(f[kt]), "--y-train", str(f[y]), *rest, *o]
    return [
        # init
        ("init-unknown-layer", ["init", "--net", "Dense(4), Frobnicate(3)", "--input-shape", "5", *o]),
        ("init-bad-input-shape", ["init", *mlp, "--input-shape", "0", *o]),
        ("init-bad-spec-syntax", ["init", "--net", "Dense(4, W_std=)", "--input-shape", "5", *o]),
        ("init-negative-width", ["init", "--net", "Dense(-4)", "--input-shape", "5", *o]),
        # apply
        ("apply-wrong-shape", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["x4"]), *o]),
        ("apply-nan", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["x_nan"]), *o]),
        ("apply-inf", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["x_inf"]), *o]),
        ("apply-empty", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["x_empty"]), *o]),
        ("apply-complex-dtype", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["x_complex"]), *o]),
        ("apply-huge-header", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["x_huge"]), *o]),
        ("apply-truncated", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["x_trunc"]), *o]),
        ("apply-random-bytes", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["random"]), *o]),
        ("apply-text-file", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["text"]), *o]),
        ("apply-missing-file", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["dir"] / "nope.npy"), *o]),
        ("apply-params-other-net", ["apply", *mlp, "--params", str(f["params_other"]), "-x", str(f["x"]), *o]),
        ("apply-params-truncated", ["apply", *mlp, "--params", str(f["params_trunc"]), "-x", str(f["x"]), *o]),
        ("apply-params-nan", ["apply", *mlp, "--params", str(f["params_nan"]), "-x", str(f["x"]), *o]),
        ("apply-params-missing-key", ["apply", *mlp, "--params", str(f["params_missing"]), "-x", str(f["x"]), *o]),
        ("apply-output-dir-missing", ["apply", *mlp, "--params", str(f["params"]), "-x", str(f["x"]), "-o",
                                      str(f["dir"] / "no" / "such" / "dir.npy")]),
        # entk
        ("entk-unknown-mode", [*entk, "--mode", "everything", *o]),
        ("entk-unknown-method", [*entk, "--method", "magic", *o]),
        ("entk-logit-out-of-range", [*entk, "--mode", "logit=7", *o]),
        ("entk-x2-other-shape", [*entk, "--x2", str(f["x4"]), *o]),
        ("entk-budget-too-small", [*entk, "--max-memory", "1000", *o]),
        ("entk-budget-malformed", [*entk, "--max-memory", "12Q", *o]),
        ("entk-tile-zero", [*entk, "--tile", "0", *o]),
        ("entk-nan", ["entk", *mlp, "--params", str(f["params"]), "--x1", str(f["x_nan"]), *o]),
        ("entk-no-params", ["entk", *mlp, "--x1", str(f["x"]), *o]),
        ("entk-1d-input", ["entk", *mlp, "--params", str(f["params"]), "--x1", str(f["x_1d"]), *o]),
        # kernel
        ("kernel-maxpool", ["kernel", "--net", "Conv(2, 3), MaxPool(2), Flatten, Dense(1)", "--x1", str(f["img"]), *o]),
        ("kernel-spatial-output", ["kernel", "--net", "Conv(2, 3), Relu", "--x1", str(f["img"]), *o]),
        ("kernel-nan", ["kernel", *mlp, "--x1", str(f["x_nan"]), *o]),
        ("kernel-budget-too-small", ["kernel", *mlp, "--x1", str(f["x"]), "--max-memory", "100", *o]),
        ("kernel-bad-get", ["kernel", *mlp, "--x1", str(f["x"]), "--get", "ntgp", *o]),
        # features
        ("features-dim-zero", ["features", "--sketch", "ntkrf", "--dim", "0", "-x", str(f["x"]), *o]),
        ("features-images-unflattened", ["features", "--sketch", "ntk", "-x", str(f["img"]), *o]),
        ("features-nan", ["features", "--sketch", "ntkrf", "-x", str(f["x_nan"]), *o]),
        ("features-degree-not-power-of-two", ["features", "--sketch", "ntk", "--degree", "3", "-x", str(f["x"]), *o]),
        ("features-unknown-sketch", ["features", "--sketch", "rff", "-x", str(f["x"]), *o]),
        ("features-overflow", ["features", "--sketch", "ntkrf", "--depth", "2", "--dim", "64", "-x", str(f["x_big"]),
                               "--dtype", "float64", *o]),
        # regress
        ("regress-k-not-square", regress("K_rect", "KT", "y")),
        ("regress-kt-columns", regress("K", "KT_bad", "y")),
        ("regress-targets-count", regress("K", "KT", "y_short")),
        ("regress-k-nan", regress("K_nan", "KT", "y")),
        ("regress-negative-label", regress("K", "KT", "labels_neg")),
        ("regress-truncated-idx-labels", regress("K", "KT", "labels_idx_trunc")),
        ("regress-negative-ridge", regress("K", "KT", "y", "--ridge", "-1")),
        # spectrum, compare, pntk-report
        ("spectrum-not-square", ["spectrum", "--k", str(f["K_rect"]), *o]),
        ("spectrum-inf", ["spectrum", "--k", str(f["K_inf"]), *o]),
        ("spectrum-truncated", ["spectrum", "--k", str(f["x_trunc"]), *o]),
        ("compare-shapes-differ", ["compare", "--k", str(f["K"]), "--ref", str(f["K_rect"]), "--json"]),
        ("pntk-report-unknown-layer", ["pntk-report", "--net", "Dense(3), Swoosh", "--seed", "0",
                                       "--x-train", str(f["x"]), "--y-train", str(f["labels"]),
                                       "--x-test", str(f["x"]), "--y-test", str(f["labels"])]),
    ]


def _case_ids():
    return [c[0] for c in _cases({k: Path("/") for k in _FILE_KEYS}, Path("/out.npy"))]


_FILE_KEYS = ["x", "x4", "img", "x_nan", "x_inf", "x_empty", "x_complex", "x_1d", "x_big", "x_huge", "x_trunc", "random",
              "text", "params", "params_other", "params_trunc", "params_nan", "params_missing", "K", "KT", "KT_bad",
              "K_rect", "K_nan", "K_inf", "y", "y_short", "labels", "labels_neg", "labels_idx_trunc", "dir"]


def test_the_suite_has_at_least_40_cases_over_every_subcommand():
    cases = _cases({k: Path("/") for k in _FILE_KEYS}, Path("/out.npy"))
    assert len(cases) >= 40
    assert {argv[0] for _, argv in cases} == {"init", "apply", "entk", "kernel", "features", "regress", "spectrum",
                                              "compare", "pntk-report"}


def _check_failure(r, out):
    assert r.returncode in (1, 2), (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ") + 15, lines[0]
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(out.name)] == []


@pytest.mark.parametrize("case", _case_ids())
def test_cli_bad_input_is_one_error_line_and_no_output(ntk_bin, files, tmp_path, case):
    out = tmp_path / "out.npy"
    argv = dict(_cases(files, out))[case]
    r = subprocess.run([str(ntk_bin), *argv], capture_output=True, text=True, timeout=120)
    _check_failure(r, out)


def _small_tmpfs(path: Path, size: str):
    """A tmpfs of `size` at path, or None where mounting is not permitted."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return path if r.returncode == 0 else None


def test_full_disk_during_an_out_of_core_write(ntk_bin, files, tmp_path):
    """A kernel larger than the disk: refused up front on a small tmpfs (the space check), or, where
    no tmpfs can be mounted, stopped mid-write by a file-size limit (writes fail as on a full disk)."""
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).random((600, 5), dtype=np.float32))
    argv = ["entk", "--net", MLP, "--seed", "0", "--x1", str(x), "--mode", "full", "--out-of-core"]
    mnt = _small_tmpfs(tmp_path / "mnt", "1M")
    try:
        if mnt is not None:
            out = mnt / "K.npy"  # 600 x 600 x 3 x 3 float32 = 13 MB on 1 MB
            r = subprocess.run([str(ntk_bin), *argv, "-o", str(out)], capture_output=True, text=True)
            _check_failure(r, out)
            assert "disk space" in r.stderr
        out = tmp_path / "K.npy"

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

        r = subprocess.run([str(ntk_bin), *argv, "-o", str(out)], capture_output=True, text=True, preexec_fn=limit)
        _check_failure(r, out)
    finally:
        if mnt is not None:
            subprocess.run(["umount", str(mnt)], check=False)


def test_unwritable_output(ntk_bin, files, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        out = ro / "K.npy"
        r = subprocess.run([str(ntk_bin), "kernel", "--net", MLP, "--x1", str(files["x"]), "-o", str(out)],
                           capture_output=True, text=True)
        if os.geteuid() == 0:  # root writes anyway: an output path that is a directory instead
            out = tmp_path
            r = subprocess.run([str(ntk_bin), "kernel", "--net", MLP, "--x1", str(files["x"]), "-o", str(out)],
                               capture_output=True, text=True)
            assert r.returncode in (1, 2) and r.stderr.startswith("error: ")
        else:
            _check_failure(r, out)
    finally:
        ro.chmod(0o700)


# ---- the Python API: the mapped exception, never a crash or NaN

def _api_cases(f):
    mlp = ntkit.Network(MLP, input_shape=(5,))
    x = np.load(f["x"])
    x_nan = np.load(f["x_nan"])
    return [
        ("unknown-layer", ValueError, lambda: ntkit.Network("Dense(4), Frobnicate", input_shape=(5,))),
        ("wrong-shape", ValueError, lambda: mlp.apply(0, np.load(f["x4"]))),
        ("nan-input", ValueError, lambda: mlp.apply(0, x_nan)),
        ("empty-input", ValueError, lambda: ntkit.empirical_ntk(mlp, 0, np.zeros((0, 5), np.float32))),
        ("complex-input", ValueError, lambda: mlp.apply(0, np.zeros((2, 5), np.complex64))),
        ("params-other-net", ValueError, lambda: mlp.apply(str(f["params_other"]), x)),
        ("params-truncated", OSError, lambda: mlp.apply(str(f["params_trunc"]), x)),
        ("params-nan", ValueError, lambda: mlp.apply(str(f["params_nan"]), x)),
        ("truncated-file", OSError, lambda: mlp.apply(0, str(f["x_trunc"]))),
        ("random-bytes", OSError, lambda: mlp.apply(0, str(f["random"]))),
        ("unknown-mode", ValueError, lambda: ntkit.empirical_ntk(mlp, 0, x, mode="everything")),
        ("budget", MemoryError, lambda: ntkit.empirical_ntk(mlp, 0, x, max_memory=1000)),
        ("kernel-maxpool", NotImplementedError,
         lambda: ntkit.kernel(ntkit.Network("Conv(2, 3), MaxPool(2), Flatten, Dense(1)", input_shape=(5, 5, 1)),
                              np.load(f["img"]))),
        ("missing-output-dir", OSError,
         lambda: ntkit.kernel(mlp, x, out=str(f["dir"] / "no" / "such" / "K.npy"))),
        ("features-overflow", ArithmeticError,
         lambda: ntkit.NTKRF(64, depth=2).fit(np.load(f["x_big"])).transform(np.load(f["x_big"]))),
    ]


API_CASES = ["unknown-layer", "wrong-shape", "nan-input", "empty-input", "complex-input", "params-other-net",
             "params-truncated", "params-nan", "truncated-file", "random-bytes", "unknown-mode", "budget",
             "kernel-maxpool", "missing-output-dir", "features-overflow"]


def test_api_case_list_is_complete(files):
    assert [c[0] for c in _api_cases(files)] == API_CASES


@pytest.mark.parametrize("case", API_CASES)
def test_python_bad_input_raises_the_mapped_exception(files, case):
    name, exc, call = {c[0]: c for c in _api_cases(files)}[case]
    with pytest.raises(exc) as info:
        call()
    assert len(str(info.value)) > 15
