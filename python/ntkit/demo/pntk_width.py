"""Part 2, Mohamadi et al. (2023): how far the pNTK (the N x N kernel of the sum of the logits,
scaled by 1/√O) is from the full N·O x N·O eNTK, as the readout layer widens and after training.

At initialization: ntkit's MLP Dense(W), Relu, Dense(W), Relu, Dense(10) under NTK
parameterization, several seeds per width. After training: the same architecture as a PyTorch
module (standard parameterization, PyTorch's initialization), trained briefly with SGD on
Fashion-MNIST, read with from_torch, reported before and after. Each point is one
ntkit.pntk_report: relative Frobenius error ‖pNTK ⊗ I − eNTK‖_F / ‖eNTK‖_F, λmax and condition
ratios, kernel-regression test accuracy with each kernel, their times and memory."""
from typing import Any, Dict, List

import numpy as np
import torch

import ntkit

from . import nets
from .common import Data, Progress, Sizes, timed

RIDGE = 1e-4  # relative to mean(diag K), the same for both kernels (pntk_report's default)


def mlp_spec(width: int) -> str:
    return f"Dense({width}), Relu, Dense({width}), Relu, Dense({nets.OUTPUTS})"


def summarize(r: Dict[str, Any]) -> Dict[str, Any]:
    """The numbers of one pntk_report that the report shows."""
    t = r["train"]
    return {"relative_error": t["relative_frobenius"], "test_relative_error": r["test"]["relative_frobenius"],
            "lambda_max_ratio": t.get("lambda_max_ratio"), "condition_ratio": t.get("condition_ratio"),
            "accuracy_full": r["accuracy_full"], "accuracy_pntk": r["accuracy_pntk"],
            "seconds_full": r["full_train"]["seconds"] + r["full_test"]["seconds"],
            "seconds_pntk": r["pntk_train"]["seconds"] + r["pntk_test"]["seconds"],
            "solve_seconds_full": r["solve_seconds_full"], "solve_seconds_pntk": r["solve_seconds_pntk"],
            "memory_full_bytes": r["full_train"]["estimated_bytes"], "memory_pntk_bytes": r["pntk_train"]["estimated_bytes"],
            "method": r["method"], "num_params": r["num_params"]}


def slope(widths: List[int], errors: List[float]) -> float:
    """Least-squares slope of log(error) against log(width)."""
    return float(np.polyfit(np.log(widths), np.log(errors), 1)[0])


def train(model: torch.nn.Module, data: Data, sizes: Sizes, threads: int, seed: int = 0) -> Dict[str, Any]:
    """A short SGD run (cross-entropy, batch 128, momentum 0.9, learning rate 0.05) on the first
    sizes.train_n training images; returns its time and the network's own test accuracy."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    x = torch.from_numpy(data.x_train[:sizes.train_n].reshape(sizes.train_n, -1))
    y = torch.from_numpy(data.y_train[:sizes.train_n])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def epochs():
        for _ in range(sizes.train_epochs):
            order = torch.randperm(len(x))
            for i in range(0, len(x), 128):
                batch = order[i:i + 128]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                opt.step()
    _, seconds = timed(epochs)
    with torch.no_grad():
        logits = model(torch.from_numpy(data.x_test.reshape(len(data.x_test), -1)))
    accuracy = float((logits.argmax(1).numpy() == data.y_test).mean())
    return {"seconds": seconds, "network_test_accuracy": accuracy, "epochs": sizes.train_epochs, "images": sizes.train_n}


def run(data: Data, sizes: Sizes, threads: int, progress: Progress) -> Dict[str, Any]:
    progress(f"part 2: pNTK against the full eNTK, widths {sizes.pntk_widths[0]}-{sizes.pntk_widths[-1]}")
    n = sizes.pntk_n
    x_train, y_train, x_test, y_test = data.split(n, n, flat=True)
    init = []
    for w in sizes.pntk_widths:
        net = ntkit.Network(mlp_spec(w), (784,))
        for seed in sizes.pntk_seeds:
            init.append(dict(width=w, seed=seed, **summarize(ntkit.pntk_report(
                net, seed, x_train, y_train, x_test, y_test, ridge=RIDGE, threads=threads))))
        errs = [p["relative_error"] for p in init if p["width"] == w]
        progress(f"  width {w} at init: error {np.mean(errs):.3f} (seeds {len(errs)})")
    trained = []
    for w in sizes.pntk_widths:
        model = nets.build("mlp", w, seed=0)
        before = summarize(ntkit.pntk_report(*ntkit.from_torch(model, (784,)), x_train, y_train, x_test, y_test,
                                             ridge=RIDGE, threads=threads))
        fit = train(model, data, sizes, threads)
        after = summarize(ntkit.pntk_report(*ntkit.from_torch(model, (784,)), x_train, y_train, x_test, y_test,
                                            ridge=RIDGE, threads=threads))
        trained.append({"width": w, "before": before, "after": after, "training": fit})
        progress(f"  width {w} PyTorch: error {before['relative_error']:.3f} before, {after['relative_error']:.3f} "
                 f"after {fit['epochs']} epochs ({fit['seconds']:.1f} s, network test accuracy {fit['network_test_accuracy']:.3f})")
    widths = sizes.pntk_widths
    mean_init = [float(np.mean([p["relative_error"] for p in init if p["width"] == w])) for w in widths]
    return {"n_train": n, "n_test": n, "ridge": RIDGE, "spec": mlp_spec("W"), "seeds": sizes.pntk_seeds,
            "widths": widths, "init": init, "init_mean_error": mean_init,
            "slope_init": slope(widths, mean_init),
            "slope_pytorch_init": slope(widths, [t["before"]["relative_error"] for t in trained]),
            "slope_trained": slope(widths, [t["after"]["relative_error"] for t in trained]),
            "trained": trained}
