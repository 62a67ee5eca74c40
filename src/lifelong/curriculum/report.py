"""The report of a curriculum run: accuracy vs examples seen, the pacing curve, and report.md."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lifelong.core.records import atomic_write_bytes, atomic_write_text


def save_png(fig: Figure, path: Path) -> Path:
    """Render `fig` with the Agg backend and write it atomically as PNG."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_accuracy(curves: dict[str, dict[str, list]], path: Path) -> Path:
    """Test accuracy against training examples seen, one line per ordering."""
    fig = Figure(figsize=(5.5, 3.4), dpi=110, layout="tight")
    ax = fig.subplots()
    for name, curve in curves.items():
        ax.plot(curve["examples"], curve["accuracy"], marker="o", ms=3, label=name)
    ax.set_xlabel("training examples seen")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save_png(fig, path)


def plot_pacing(pacing: dict[str, list], curve: dict[str, list], path: Path, title: str) -> Path:
    """The pacing function and the fraction of the data the curriculum actually used."""
    fig = Figure(figsize=(5.5, 3.0), dpi=110, layout="tight")
    ax = fig.subplots()
    ax.plot(pacing["examples"], pacing["fraction"], label="pacing function")
    ax.step(curve["examples"], curve["fraction"], where="pre", ls="--", label="fraction in use")
    ax.set_xlabel("training examples seen")
    ax.set_ylabel("fraction of the data")
    ax.set_ylim(0.0, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save_png(fig, path)


def write_report(folder: str | Path, results: dict[str, Any]) -> Path:
    """accuracy.png, pacing.png and report.md in `folder` from a run's results."""
    folder = Path(folder)
    cfg = results["config"]
    order = "anti-curriculum (hardest first)" if cfg["anti"] else "curriculum (easiest first)"
    plot_accuracy(results["curves"], folder / "accuracy.png")
    plot_pacing(results["pacing"], results["curves"]["curriculum"], folder / "pacing.png",
                f"{cfg['pacing']}, c0={cfg['c0']}")
    rows = "\n".join(f"| {name} | {s['final']:.3f} | {s['mean']:.3f} |"
                     for name, s in results["summary"].items())
    text = f"""# {results['name']}

{order} with the `{cfg['scorer']}` scorer and `{cfg['pacing']}` pacing (c0 = {cfg['c0']},
whole data after {cfg['pace_until']:g} of the budget) against random order, on `{cfg['dataset']}`
with {results['noisy_labels']} noisy training labels ({cfg['label_noise']:.0%}). Both start from the
same model and see {cfg['epochs']} epochs' worth of examples; batch {cfg['batch_size']}, lr {cfg['lr']},
seed {cfg['seed']}. Class-balanced ranking: {cfg['balanced']}.

| order | final test accuracy | mean over the curve |
|---|---|---|
{rows}

## Test accuracy vs examples seen

![accuracy](accuracy.png)

## Pacing

![pacing](pacing.png)
"""
    return atomic_write_text(folder / "report.md", text)
