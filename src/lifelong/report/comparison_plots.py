"""Plots comparing strategies: accuracy against wall time (Pareto front) and forgetting curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lifelong.core.records import atomic_write_figure
from lifelong.report.plots import plt


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both time (lower) and accuracy (higher), by time."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """ACC against wall time per strategy (error bars: std over seeds), the Pareto front joined."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    points = [(r["seconds"][0], r["acc"][0]) for r in rows]
    for r, (x, y) in zip(rows, points, strict=True):
        ax.errorbar(x, y, xerr=r["seconds"][1], yerr=r["acc"][1], fmt="o", capsize=3)
        ax.annotate(r["label"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = pareto_front(points)
    ax.step([points[i][0] for i in front], [points[i][1] for i in front], "k--", where="post", lw=1,
            label="Pareto front")
    ax.set_xlabel("wall time per run (s)")
    ax.set_ylabel("ACC (final mean accuracy)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "accuracy against time")
    return atomic_write_figure(fig, path)


def forgetting_plot(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Forgetting after each experience, one line per strategy (band: ± std over seeds)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in rows:
        mean = [m for m, _ in r["forgetting_curve"]]
        std = [s for _, s in r["forgetting_curve"]]
        steps = range(1, len(mean) + 1)
        ax.plot(steps, mean, marker="o", ms=3, label=r["label"])
        ax.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)],
                        [m + s for m, s in zip(mean, std, strict=True)], alpha=0.15)
    ax.set_xticks(range(1, 1 + max((len(r["forgetting_curve"]) for r in rows), default=1)))
    ax.set_xlabel("experiences trained")
    ax.set_ylabel("forgetting (mean drop from best accuracy)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title or "forgetting as experiences arrive")
    return atomic_write_figure(fig, path)
