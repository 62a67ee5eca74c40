"""The report of a multi-task run: per-task curves, loss-weight trajectory, conflict heatmap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lifelong.core.records import atomic_write_figure, atomic_write_text  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> str:
    return atomic_write_figure(fig, path, dpi=100).name


def task_curves(results: dict[str, Any], path: Path) -> str:
    """One column per task: its primary test metric (top) and training loss (bottom) per epoch."""
    tasks, history = results["tasks"], results["history"]
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.4 * len(tasks), 5.0), squeeze=False,
                             sharex=True)
    for col, task in enumerate(tasks):
        name, metric = task["name"], task["primary"]
        top, bottom = axes[0][col], axes[1][col]
        top.plot(epochs, [h["test"][name][metric] for h in history], "o-", ms=3)
        top.set_title(name)
        top.set_ylabel(f"test {metric}")
        bottom.plot(epochs, [h["train_loss"][name] for h in history], "o--", ms=3, color="grey")
        bottom.set_ylabel("train loss")
        bottom.set_xlabel("epoch")
    fig.tight_layout()
    return _save(fig, path)


def matrix_plot(matrix: Sequence[Sequence[float]], labels: Sequence[str], path: Path,
                title: str) -> str:
    """Annotated heatmap of a task × task matrix (cosines, affinities)."""
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * k, 1.0 + 0.7 * k))
    image = ax.imshow(matrix, cmap="coolwarm", vmin=-1.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i][j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(k), labels, rotation=45)
    ax.set_yticks(range(k), labels)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.05)
    return _save(fig, path)


def weights_plot(trajectory: Sequence[Sequence[float]], labels: Sequence[str], path: Path) -> str:
    """Each task's loss weight at every step."""
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    for j, label in enumerate(labels):
        ax.plot([w[j] for w in trajectory], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("task weight")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    fmt = [f"{v:.4f}" if isinstance(v, float) else str(v) for row in rows for v in row]
    width = len(header)
    body = [fmt[i:i + width] for i in range(0, len(fmt), width)]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * width,
            *("| " + " | ".join(r) + " |" for r in body)]


def write_report(folder: Path, results: dict[str, Any]) -> Path:
    """Write `report.md` and its PNG plots into the run folder."""
    names = [t["name"] for t in results["tasks"]]
    cfg = results["config"]
    lines = [f"# Multi-task run `{results['name']}`", "",
             f"{cfg['arch']} + {cfg['weighting']} on {cfg['benchmark']}, seed {results['seed']}, "
             f"{len(results['history'])} epochs, {results['parameters']} parameters, "
             f"{results['timings']['total_seconds']:.1f} s.", "", "## Final test metrics", ""]
    rows = [[t["name"], t["kind"], *(f"{k}={v:.4f}" for k, v in results["final"][t["name"]].items())]
            for t in results["tasks"]]
    lines += _table(["task", "kind", "metrics"], [[r[0], r[1], ", ".join(r[2:])] for r in rows])
    lines += ["", "## Curves", "", f"![per-task curves]({task_curves(results, folder / 'tasks.png')})"]
    if results["weights_trajectory"]:
        plot = weights_plot(results["weights_trajectory"], names, folder / "weights.png")
        lines += ["", "## Task weights", "", f"![loss weights]({plot})"]
    conflicts = results.get("conflicts")
    if conflicts:
        plot = matrix_plot(conflicts["mean_cosine"], names, folder / "conflicts.png",
                           "mean gradient cosine")
        overall = conflicts["overall_conflict_ratio"]
        lines += ["", "## Gradient conflicts", "",
                  f"Overall conflict ratio (share of records with cosine < 0, over pairs): "
                  f"{'none: no pair of tasks was recorded' if overall is None else f'{overall:.3f}'} "
                  f"over {conflicts['records']} records.",
                  "", f"![gradient cosines]({plot})"]
        lines += [f"- WARNING: {w['tasks'][0]} and {w['tasks'][1]} conflict persistently "
                  f"(mean cosine {w['mean_cosine']:.3f} at step {w['step']})"
                  for w in conflicts["warnings"]]
    diagnostics = results.get("diagnostics")
    if diagnostics:
        lines += ["", *diagnostics_section(diagnostics, names, folder)]
    path = folder / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def diagnostics_section(diag: dict[str, Any], names: Sequence[str], folder: Path) -> list[str]:
    """Markdown for task affinities, the best groupings and the negative-transfer table."""
    lines = ["## Task affinity (Fifty et al., 2021)", ""]
    plot = matrix_plot(diag["affinity"], names, folder / "affinity.png", "Z[i→j] (row i helps j)")
    lines += [f"![affinity]({plot})", ""]
    lines += ["Groups selected as in TAG (they may overlap; each task counts its best group):", ""]
    lines += [f"- at most {n}: " + " | ".join(", ".join(names[i] for i in g) for g in d["groups"])
              + f" (mean affinity onto each task {d['score']:.4f})" for n, d in diag["groupings"].items()]
    transfer = diag.get("transfer")
    if transfer:
        lines += ["", "## Negative transfer (vs single-task baselines)", ""]
        rows = [[t, v["multi_task"], v["single_task"], v["change_percent"],
                 "yes" if v["negative_transfer"] else "no"] for t, v in transfer["tasks"].items()]
        lines += _table(["task", "multi-task", "single-task", "change %", "negative"], rows)
        lines += ["", f"Δm (Maninis et al., 2019) = {transfer['delta_m']:+.2f}%"]
    return lines
