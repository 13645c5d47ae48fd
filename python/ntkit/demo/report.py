"""The demo's outputs: results.json (every number), report.md (tables made from that JSON) and PNG
plots (drawn from it with matplotlib), each written atomically."""
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .common import usable_cores

PLOTS = {"entk": "entk_methods.png", "pntk": "pntk_error_vs_width.png", "accuracy": "sketch_accuracy.png",
         "time": "sketch_time.png"}
TOOL_COLORS = {"ntkit": "tab:blue", "functorch": "tab:orange", "neural-tangents": "tab:green"}


def atomic_write(path: Path, write) -> None:
    """write(tmp_path) then rename over path: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def machine(threads: int) -> Dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    from .common import blas_coretype
    return {"cpu": cpu, "cores": usable_cores(), "memory_bytes": mem, "threads": threads,
            "openblas_coretype": blas_coretype() or "(OpenBLAS's own choice for this CPU)",
            "os": platform.platform(), "python": platform.python_version()}


def fmt(v, spec=".3g") -> str:
    """How the report prints a number (the CI test formats the JSON's numbers the same way)."""
    if v is None:
        return "-"
    return format(v, spec)


def finite_mean(values) -> Optional[float]:
    """The mean of the defined values (a report's null: a condition number of a singular kernel),
    None if there are none."""
    defined = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(defined)) if defined else None


def mib(b) -> str:
    return "-" if b is None else f"{b / 2**20:.0f}"


# ----------------------------------------------------------------------------------------------
# Plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    _plt().close(fig)


def _plain_ticks(ax, xs, y: bool = True) -> None:
    """Log axes labelled with plain numbers: the x ticks at the measured points, y as decimals."""
    from matplotlib.ticker import FormatStrFormatter, NullLocator
    ax.set_xticks(sorted(set(xs)), [str(v) for v in sorted(set(xs))])
    ax.xaxis.set_minor_locator(NullLocator())
    if y:
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)


def plot_entk(entk: Dict[str, Any], path: Path) -> None:
    plt = _plt()
    entk = entk["archs"]
    fig, axes = plt.subplots(1, len(entk), figsize=(6.2 * len(entk), 4.2), squeeze=False)
    for ax, arch in zip(axes[0], entk):
        runs = arch["runs"]
        labels = [r["label"] for r in runs]
        secs = [r["median_seconds"] for r in runs]
        colors = [TOOL_COLORS[r["tool"]] for r in runs]
        y = np.arange(len(runs))[::-1]
        ax.barh(y, secs, color=colors)
        ax.set_yticks(y, labels)
        ax.set_xscale("log")
        ax.set_xlabel("median time per kernel (seconds, log scale)")
        for yi, s in zip(y, secs):
            ax.text(s, yi, f" {s:.3g} s", va="center", fontsize=8)
        ax.set_xlim(min(secs) / 2, max(secs) * 8)
        ax.set_title(f"{arch['arch'].upper()}: eNTK (N={arch['n']}, O={arch['outputs']}), "
                     f"{arch['num_params']:,} parameters", fontsize=10)
    tools = [t for t in TOOL_COLORS if any(r["tool"] == t for a in entk for r in a["runs"])]
    handles = [plt.Rectangle((0, 0), 1, 1, color=TOOL_COLORS[t]) for t in tools]
    axes[0][-1].legend(handles, tools, loc="lower right", fontsize=8)
    _save(fig, path)


def plot_pntk(p: Dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    widths = np.array(p["widths"], dtype=float)
    per_width = [[q["relative_error"] for q in p["init"] if q["width"] == w] for w in p["widths"]]
    mean = np.array(p["init_mean_error"])
    lo, hi = mean - [min(e) for e in per_width], [max(e) for e in per_width] - mean
    ax.errorbar(widths, mean, yerr=[lo, hi], fmt="o-", color="tab:blue", capsize=3,
                label=f"ntkit init, NTK param. (mean, range of {len(p['seeds'])} seeds): slope {p['slope_init']:.2f}")
    before = [t["before"]["relative_error"] for t in p["trained"]]
    after = [t["after"]["relative_error"] for t in p["trained"]]
    ax.plot(widths, before, "s--", color="tab:orange", label=f"PyTorch init (standard param.): slope {p['slope_pytorch_init']:.2f}")
    ax.plot(widths, after, "^-", color="tab:red", label=f"after SGD training: slope {p['slope_trained']:.2f}")
    ref = mean[0] * (widths / widths[0]) ** -0.5
    ax.plot(widths, ref, ":", color="gray", label="width$^{-1/2}$ (Mohamadi et al.)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _plain_ticks(ax, p["widths"])
    ax.set_xlabel("readout width W (log scale)")
    ax.set_ylabel("relative error ‖pNTK⊗I − eNTK‖_F / ‖eNTK‖_F (log scale)")
    ax.set_title(f"pNTK against the full eNTK, MLP, {p['n_train']} Fashion-MNIST images", fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, path)


SKETCH_PANELS = [("ntk", "infinite-width NTK (MLP, depth 2)"), ("cntk", "infinite-width CNTK-GAP (depth 3)"),
                 ("gradient", "trained MLP's pNTK")]


def plot_sketches(s: Dict[str, Any], path: Path, key: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    markers = iter("os^vD")
    for ax, (part, title) in zip(axes, SKETCH_PANELS):
        rows = s[part]["rows"]
        exact = rows[0]
        names = sorted({r["method"] for r in rows[1:]}, key=lambda n: [r["method"] for r in rows].index(n))
        for name in names:
            pts = [r for r in rows if r["method"] == name]
            m = [r["m"] for r in pts]
            v = [100 * r["test_accuracy"] if key == "accuracy" else r["total_seconds"] for r in pts]
            ax.plot(m, v, marker=next(markers, "o"), label=name)
        ev = 100 * exact["test_accuracy"] if key == "accuracy" else exact["total_seconds"]
        if key == "accuracy":  # at least 8 points of accuracy on the axis, so that noise looks like noise
            values = [100 * r["test_accuracy"] for r in rows]
            lo, hi = min(values) - 1, max(values) + 1
            if hi - lo < 8:
                lo, hi = (lo + hi) / 2 - 4, (lo + hi) / 2 + 4
            ax.set_ylim(lo, hi)
        ax.axhline(ev, color="black", linestyle="--", label=f"{exact['method']} ({ev:.3g}{' %' if key == 'accuracy' else ' s'})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("feature dimension m (log scale)")
        if key == "accuracy":
            ax.set_ylabel("test accuracy (%)")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("time: kernel or features + ridge (seconds, log scale)")
        _plain_ticks(ax, [r["m"] for r in rows[1:]], y=key == "time")
        ax.set_title(f"{title}\nN = {s[part]['n_train']} train / {s[part]['n_test']} test", fontsize=10)
        ax.legend(fontsize=8)
    _save(fig, path)


def plots(results: Dict[str, Any], out: Path) -> Dict[str, str]:
    made = {}
    if "entk" in results:
        plot_entk(results["entk"], out / PLOTS["entk"])
        made["entk"] = PLOTS["entk"]
    if "pntk" in results:
        plot_pntk(results["pntk"], out / PLOTS["pntk"])
        made["pntk"] = PLOTS["pntk"]
    if "sketches" in results:
        plot_sketches(results["sketches"], out / PLOTS["accuracy"], "accuracy")
        plot_sketches(results["sketches"], out / PLOTS["time"], "time")
        made["accuracy"], made["time"] = PLOTS["accuracy"], PLOTS["time"]
    return made


# ----------------------------------------------------------------------------------------------
# Markdown

def table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def entk_section(entk: Dict[str, Any]) -> str:
    out = ["## 1. Fast finite-width NTK (Novak et al., ICML 2022)", "",
           "The full empirical NTK Θ[i, j, a, b] of each network on the first N training images, float32, by "
           "Jacobian contraction (jc), NTK-vector products (vp) and structured derivatives (sd), and ntkit's "
           "automatic choice; the peers compute the same kernel from the same parameters. Each method runs in a "
           "process of its own: a first call (for neural-tangents, jit compilation; reported apart), then the "
           "median of the timed calls. Peak memory is the process's peak resident set (VmHWM), its baseline "
           "after imports and inputs beside it. Agreement: ‖K − K_ref‖_F / ‖K_ref‖_F against ntkit's jc in "
           "float64. GFLOP/s: ntkit's FLOP count of the method (its plan, below) over the median time, beside "
           f"the float32 GEMM peak measured in this run: **{entk['sgemm']['gflops']:.0f} GFLOP/s** (NumPy's "
           f"OpenBLAS, {entk['sgemm']['n']}³, {entk['sgemm']['threads']} threads).", ""]
    for a in entk["archs"]:
        runs = a["runs"]
        best_peer = min((r for r in runs if r["tool"] != "ntkit"), key=lambda r: r["median_seconds"], default=None)
        auto = next(r for r in runs if r["tool"] == "ntkit" and r["method"] == "auto")
        out += [f"### {a['arch'].upper()}: `{a['spec']}`", "",
                f"N = {a['n']} images, O = {a['outputs']} outputs, P = {a['num_params']:,} parameters, kernel "
                f"{tuple(a['kernel_shape'])}.", ""]
        rows = [[r["label"], fmt(r["median_seconds"]), fmt(r["first_call_seconds"]), mib(r["peak_rss_bytes"]),
                 mib(r["baseline_rss_bytes"]), fmt(r["relative_difference"], ".1e"), fmt(r.get("gflops"))] for r in runs]
        out += [table(["tool, method", "median s", "first call s", "peak MiB", "baseline MiB", "difference", "GFLOP/s"],
                      rows), ""]
        if best_peer:
            out += [f"ntkit auto: {fmt(auto['median_seconds'])} s; the fastest peer method ({best_peer['label']}): "
                    f"{fmt(best_peer['median_seconds'])} s: ntkit's speed-up over the fastest peer "
                    f"**{fmt(best_peer['median_seconds'] / auto['median_seconds'])}** (peer time / ntkit time).", ""]
        out += ["ntkit's plan (`ntk entk --explain`):", "", "```", a["auto_plan"].strip(), "```", ""]
    out += [f"![eNTK methods]({PLOTS['entk']})", ""]
    return "\n".join(out)


def trained_summary(trained: List[Dict[str, Any]]) -> str:
    """What training did to the approximation, in this run's numbers (means over the widths)."""
    mean = lambda f: finite_mean([f(t) for t in trained])  # noqa: E731
    err_before, err_after = mean(lambda t: t["before"]["relative_error"]), mean(lambda t: t["after"]["relative_error"])
    inverse = mean(lambda t: None if not t["after"]["lambda_max_ratio"] else 1 / t["after"]["lambda_max_ratio"])
    acc_full, acc_pntk = mean(lambda t: t["after"]["accuracy_full"]), mean(lambda t: t["after"]["accuracy_pntk"])
    out = f"Averaged over the widths, training took the error from {fmt(err_before)} to {fmt(err_after)}"
    if inverse is not None:
        out += f"; the trained eNTK's top eigenvalue is {fmt(inverse)}x that of pNTK ⊗ I"
    if err_after is not None and err_before is not None and err_after > 2 * err_before:
        out += (": the trained eNTK is far from a kernel times the identity over the logits, which is what the pNTK "
                "assumes")
    verdict = ("better" if acc_pntk > acc_full + 0.005 else "worse" if acc_pntk < acc_full - 0.005 else "as well")
    return out + (f". As a kernel for regression the pNTK does {verdict}: test accuracy {fmt(acc_pntk)} with the "
                  f"pNTK against {fmt(acc_full)} with the eNTK.")


def pntk_section(p: Dict[str, Any]) -> str:
    out = ["## 2. pNTK (Mohamadi, Bae, Sutherland, ICML 2023)", "",
           f"The pNTK (N × N, the NTK of the sum of the logits / √O) against the full eNTK (N·O × N·O) of the MLP "
           f"`{p['spec']}` on {p['n_train']} training / {p['n_test']} test images: error ‖pNTK ⊗ I − eNTK‖_F / "
           f"‖eNTK‖_F on the training kernel, λmax and condition-number ratios (pNTK ⊗ I over eNTK), kernel "
           f"regression test accuracy with each kernel (ridge {p['ridge']:g} relative to the mean diagonal), "
           f"kernel times (train and test kernels) and ntkit's memory estimates for each.", "",
           f"### At initialization (ntkit's init, NTK parameterization, seeds {', '.join(map(str, p['seeds']))}; "
           "means over seeds)", ""]
    rows = []
    for w, mean_err in zip(p["widths"], p["init_mean_error"]):
        q = [x for x in p["init"] if x["width"] == w]
        avg = lambda k: finite_mean([x[k] for x in q])  # noqa: E731
        rows.append([str(w), f"{q[0]['num_params']:,}", fmt(mean_err), fmt(avg("lambda_max_ratio")),
                     fmt(avg("condition_ratio")), fmt(avg("accuracy_full")), fmt(avg("accuracy_pntk")),
                     fmt(avg("seconds_full")), fmt(avg("seconds_pntk")), mib(q[0]["memory_full_bytes"]),
                     mib(q[0]["memory_pntk_bytes"])])
    out += [table(["W", "P", "error", "λmax ratio", "cond ratio", "acc eNTK", "acc pNTK", "eNTK s", "pNTK s",
                   "eNTK MiB", "pNTK MiB"], rows), "",
            f"**Fitted log-log slope of the error against width: {p['slope_init']:.2f}** (Mohamadi et al.: "
            f"O(W^-1/2), slope -0.5).", "",
            "### The same architecture in PyTorch, before and after training", "",
            "`nn.Sequential` of `nn.Linear` and `nn.ReLU` (standard parameterization, PyTorch's initialization), "
            "read with `ntkit.from_torch`; trained with SGD (cross-entropy, batch 128, momentum 0.9, learning "
            "rate 0.05).", ""]
    rows = [[str(t["width"]), fmt(t["before"]["relative_error"]), fmt(t["after"]["relative_error"]),
             fmt(t["after"]["lambda_max_ratio"]), fmt(t["after"]["condition_ratio"]),
             fmt(t["after"]["accuracy_full"]), fmt(t["after"]["accuracy_pntk"]),
             fmt(t["training"]["network_test_accuracy"]), fmt(t["training"]["seconds"])] for t in p["trained"]]
    tr = p["trained"][0]["training"]
    out += [table(["W", "error before", "error after", "λmax ratio after", "cond ratio after", "acc eNTK after",
                   "acc pNTK after", "network's own acc", "training s"], rows), "",
            f"Training: {tr['epochs']} epochs on {tr['images']} images; the network's own accuracy is on all "
            f"{10000} test images. Slopes: PyTorch init {p['slope_pytorch_init']:.2f}, after training "
            f"{p['slope_trained']:.2f}.", "", trained_summary(p["trained"]), "",
            f"![pNTK error against width]({PLOTS['pntk']})", ""]
    return "\n".join(out)


def sketch_section(s: Dict[str, Any]) -> str:
    out = ["## 3. Sketches and random features (Zandieh et al., NeurIPS 2021)", "",
           "Kernel ridge regression with each exact kernel against ridge regression on the features that "
           "approximate it, as the feature dimension m grows; the ridge chosen the same way for all "
           "(`ridge=\"auto\"`: on the last 10% of the training rows, then refit). Time: the kernels (train and "
           "test) or the features, plus the solve; speed-up: the exact kernel's time over the method's. The exact "
           "kernel costs O(N²) entries and an O(N³) solve, the features O(N·m) and at most an O(N·m²) solve: "
           "the sketches' advantage grows with N, and at a given N with the cost of a kernel entry (the CNTK's "
           "entries are the expensive ones).", ""]
    for part, title in SKETCH_PANELS:
        d = s[part]
        out += [f"### {title}: `{d['spec']}`", "", f"{d['n_train']} training / {d['n_test']} test images"
                + (f", {d['input']}" if "input" in d else "") + "."
                + (f" The network was trained for {d['training']['epochs']} epochs on {d['training']['images']} images "
                   f"({fmt(d['training']['network_test_accuracy'])} test accuracy on its own)." if "training" in d else ""), ""]
        rows = [[r["method"], "-" if r["m"] is None else str(r["m"]), fmt(r["test_accuracy"]), fmt(r["total_seconds"]),
                 fmt(r.get("speedup")), fmt(r["ridge"])] for r in d["rows"]]
        out += [table(["method", "m", "test accuracy", "time s", "speed-up", "ridge"], rows), ""]
    out += [f"![accuracy against feature dimension]({PLOTS['accuracy']})", "",
            f"![time against feature dimension]({PLOTS['time']})", ""]
    return "\n".join(out)


def markdown(results: Dict[str, Any]) -> str:
    m, v = results["machine"], results["versions"]
    head = ["# ntkit demo: the three papers on Fashion-MNIST", "",
            f"Measured by `{results['command']}` on {results['started']}, in {results['wall_seconds']:.0f} s "
            f"(peak resident memory of the demo process {mib(results['peak_rss_bytes'])} MiB"
            + ("; each eNTK method ran in its own process, its peak below" if "entk" in results else "")
            + "). Every number here is in `results.json` from the same run.", "",
            f"Machine: {m['cpu']}, {m['cores']} cores, {mib(m['memory_bytes'])} MiB memory, {m['os']}; "
            f"**{m['threads']} threads** for every tool; OpenBLAS kernels {m['openblas_coretype']} for ntkit, "
            f"NumPy and PyTorch alike. Versions: "
            + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", ""]
    parts = [s for key, s in (("entk", entk_section), ("pntk", pntk_section), ("sketches", sketch_section))
             if key in results for s in [s(results[key])]]
    return "\n".join(head + parts)


def write(results: Dict[str, Any], out: Path) -> None:
    results["plots"] = plots(results, out)
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(markdown(results)))
