"""Plots of continual runs: the annotated accuracy-matrix heatmap and per-experience curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lifelong.core.records import atomic_write_figure  # noqa: E402


def accuracy_heatmap(matrix: Sequence[Sequence[float]], path: str | Path, title: str = "") -> Path:
    """Heatmap of R (rows: untrained, then after each experience), each cell annotated."""
    rows, cols = len(matrix), len(matrix[0])
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * cols, 0.8 + 0.55 * rows))
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(rows):
        for j in range(cols):
            value = matrix[i][j]
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if value > 0.6 else "white")
    ax.set_xticks(range(cols), [f"E{j + 1}" for j in range(cols)])
    ax.set_yticks(range(rows), ["untrained"] + [f"after E{i}" for i in range(1, rows)])
    ax.set_xlabel("evaluated on")
    ax.set_title(title or "accuracy matrix R")
    fig.colorbar(image, ax=ax, fraction=0.05)
    return atomic_write_figure(fig, path)


def experience_curves(curves: Mapping[str, Sequence[Sequence[float]]], path: str | Path,
                      title: str = "") -> Path:
    """Accuracy on each experience as training proceeds; one panel per run in `curves`."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (label, matrix) in zip(axes[0], curves.items(), strict=True):
        steps = range(len(matrix))
        for j in range(len(matrix[0])):
            ax.plot(steps, [row[j] for row in matrix], marker="o", ms=3, label=f"E{j + 1}")
        ax.plot(steps, [sum(r[: max(i, 1)]) / max(i, 1) for i, r in enumerate(matrix)], "k--",
                lw=1.5, label="mean seen")
        ax.set_xlabel("experiences trained")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(label)
    axes[0][-1].legend(fontsize=7, loc="lower left", ncol=2)
    if title:
        fig.suptitle(title)
    return atomic_write_figure(fig, path)
