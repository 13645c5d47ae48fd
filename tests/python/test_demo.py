"""`ntk demo` (ntkit.demo), the main job, at its --quick size: it runs through the installed `ntk`,
writes report.md, results.json and the PNG plots, and they agree with each other: every number
the report's tables show is the JSON's, formatted as the report formats it; every plot the JSON
lists is a PNG the report links; the kernels of every method agree. The claims themselves (the
slope, accuracy rising with m) need the default size and are stated in the report, not here."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ntkit.demo import report

NTK = Path(sys.executable).parent / "ntk"  # pip installs the CLI beside the venv's python


def demo(*args, env=None):
    environment = dict(os.environ, NTKIT_PYTHON=sys.executable)
    environment.update(env or {})
    return subprocess.run([str(NTK), "demo", *args], capture_output=True, text=True, env=environment)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    r = demo("--quick", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"report: {out / 'report.md'}" in r.stdout
    assert "part 1" in r.stderr and "part 3" in r.stderr  # progress lines
    return out, json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def row(md: str, first_cells: str) -> str:
    """The table line of the report that starts with these cells."""
    lines = [line for line in md.splitlines() if line.startswith(f"| {first_cells} |")]
    assert len(lines) == 1, f"no single table row '{first_cells}' in the report"
    return lines[0]


def test_outputs_written_and_plots_linked(quick):
    out, res, md = quick
    assert set(res["plots"]) == {"entk", "pntk", "accuracy", "time"}
    for name in res["plots"].values():
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
        assert f"]({name})" in md
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left by the atomic writes
    assert res["machine"]["threads"] >= 1 and res["machine"]["cpu"] in md
    assert f"**{res['machine']['threads']} threads**" in md
    for name, version in res["versions"].items():
        assert f"{name} {version}" in md


def test_entk_tables_are_the_json(quick):
    _, res, md = quick
    peak = res["entk"]["sgemm"]
    assert peak["gflops"] > 0 and f"**{peak['gflops']:.0f} GFLOP/s**" in md
    for arch in res["entk"]["archs"]:
        labels = [r["label"] for r in arch["runs"]]
        assert labels[:6] == ["ntkit jc", "ntkit vp", "ntkit sd", "ntkit auto", "functorch jc", "functorch vp"]
        assert f"P = {arch['num_params']:,} parameters" in md
        for r in arch["runs"]:
            # the same kernel by every method and tool: float32 against ntkit's jc in float64
            assert r["relative_difference"] < 1e-4, r
            assert r["peak_rss_bytes"] >= r["baseline_rss_bytes"] > 0
            assert min(r["seconds"]) <= r["median_seconds"] <= max(r["seconds"])
        section = md.split(f"### {arch['arch'].upper()}: ")[1].split("###")[0]
        for r in arch["runs"]:
            line = row(section, r["label"])
            assert f"| {report.fmt(r['median_seconds'])} |" in line
            assert f"| {report.fmt(r['relative_difference'], '.1e')} |" in line
            if r["tool"] == "ntkit":  # ntkit's FLOPs over its time, below the GEMM peak measured beside it
                assert line.endswith(f"| {report.fmt(r['gflops'])} |") and r["gflop"] > 0 < r["gflops"]


def test_pntk_table_and_slope_are_the_json(quick):
    _, res, md = quick
    p = res["pntk"]
    assert p["widths"] == sorted(p["widths"]) and len(p["init"]) == len(p["widths"]) * len(p["seeds"])
    assert f"Fitted log-log slope of the error against width: {p['slope_init']:.2f}" in md
    at_init = md.split("### At initialization")[1].split("###")[0]
    for w, err in zip(p["widths"], p["init_mean_error"]):
        line = row(at_init, str(w))
        assert f"| {report.fmt(err)} |" in line
        errors = [q["relative_error"] for q in p["init"] if q["width"] == w]
        assert min(errors) <= err <= max(errors) and 0 < err < 1.5
    trained = md.split("### The same architecture in PyTorch")[1].split("##")[0]
    for t in p["trained"]:
        assert 0 < t["after"]["relative_error"] and 0 <= t["training"]["network_test_accuracy"] <= 1
        line = row(trained, str(t["width"]))
        assert line.startswith(f"| {t['width']} | {report.fmt(t['before']['relative_error'])} | "
                               f"{report.fmt(t['after']['relative_error'])} |")


def test_sketch_tables_are_the_json(quick):
    _, res, md = quick
    for part, _ in report.SKETCH_PANELS:
        rows = res["sketches"][part]["rows"]
        assert rows[0]["m"] is None and rows[0]["method"].startswith("exact")
        dims = [r["m"] for r in rows[1:]]
        assert dims and all(m > 0 for m in dims)
        for r in rows:
            assert 0 <= r["test_accuracy"] <= 1 and r["total_seconds"] > 0
            line = row(md, f"{r['method']} | {'-' if r['m'] is None else r['m']}")
            assert f"| {report.fmt(r['test_accuracy'])} | {report.fmt(r['total_seconds'])} |" in line
            if r["m"] is not None:
                assert abs(r["speedup"] - rows[0]["total_seconds"] / r["total_seconds"]) < 1e-9 * r["speedup"]


def test_bad_arguments_are_one_error_line(tmp_path):
    r = demo("--parts", "4", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "--parts" in r.stderr and not (tmp_path / "x").exists()
    r = demo("--quick", "--data", str(tmp_path), "--out", str(tmp_path / "y"))
    assert r.returncode == 1 and re.search(r"^error: Fashion-MNIST not found in .*dataset-fashion-mnist", r.stderr, re.M)
    assert not (tmp_path / "y" / "report.md").exists()
    r = demo("--quick", env={"NTKIT_PYTHON": str(tmp_path / "no-python")})
    assert r.returncode == 1 and r.stderr.startswith("error: ntk demo: cannot start")
    r = demo("--quick", "--nt-python", sys.executable, "--out", str(tmp_path / "z"))  # a Python without neural-tangents
    assert r.returncode == 1 and "cannot import neural-tangents" in r.stderr
    r = demo("--quick", "--nt-python", str(tmp_path / "no-python"), "--out", str(tmp_path / "z"))
    assert r.returncode == 1 and r.stderr.startswith("error: --nt-python") and "cannot be run" in r.stderr


def test_one_part_alone(tmp_path):
    """--parts 2: only that part's numbers, table and plot; the other parts' sentences are left out."""
    r = demo("--quick", "--parts", "2", "--out", str(tmp_path), "-q")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    assert "pntk" in res and "entk" not in res and "sketches" not in res
    assert set(res["plots"]) == {"pntk"} and sorted(p.name for p in tmp_path.glob("*.png")) == [res["plots"]["pntk"]]
    md = (tmp_path / "report.md").read_text()
    assert "## 2. pNTK" in md and "## 1." not in md and "## 3." not in md and "its own process" not in md
