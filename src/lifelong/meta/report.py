"""report.md and its plot for a meta-continual run: training loss, and the stream, vs the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lifelong.core.records import atomic_write_figure, atomic_write_text
from lifelong.report.run_report import _matrix_table


def seen_curve(matrix: list[list[float]]) -> list[float]:
    """Mean metric over the tasks seen so far, after each task of the stream (rows 1..T)."""
    return [sum(row[:i]) / i for i, row in enumerate(matrix) if i]


def plot_run(results: dict[str, Any], losses: list[float], path: str | Path) -> Path:
    """Two panels: (meta-)training loss per step; mean metric over seen tasks, method vs baseline."""
    fig = Figure(figsize=(9.5, 3.4))
    left, right = fig.subplots(1, 2)
    left.plot(range(1, len(losses) + 1), losses, lw=1)
    left.set_xlabel("meta-training step" if results["meta_trained"] else "pre-training epoch")
    left.set_ylabel("loss")
    left.set_yscale("log")
    left.set_title(f"{results['method']}: training")
    for key, label in (("result", results["method"]), ("baseline", "pre-trained + fine-tuned")):
        curve = seen_curve(results[key]["matrix"])
        right.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=label)
    right.set_xlabel("tasks learned")
    right.set_ylabel(f"mean {results['metric']} over seen tasks")
    right.set_title(f"continual evaluation on {results['benchmark']}")
    right.legend(fontsize=8)
    fig.tight_layout()
    return atomic_write_figure(fig, path)


def write_report(folder: str | Path, results: dict[str, Any], losses: list[float]) -> Path:
    """Write plot.png and report.md for the results of `run_meta`."""
    folder = Path(folder)
    plot_run(results, losses, folder / "plot.png")
    metric = results["metric"]
    better = "higher" if metric == "accuracy" else "lower"
    name, m, b = results["method"], results["result"], results["baseline"]
    text = f"""# {results['name']}

`{name}` meta-continual learning on `{results['benchmark']}`, seed {results['seed']},
{results['timings']['total_seconds']:.1f} s.

| learner | final {metric} over all tasks ({better} is better) | forgetting |
|---|---|---|
| {name} | {m['final']:.4f} | {m['forgetting']:.4f} |
| pre-trained + fine-tuned online | {b['final']:.4f} | {b['forgetting']:.4f} |

Both learn the meta-test stream the same way: one task after another, plain SGD on the
prediction network only, samples in order. Forgetting: mean over earlier tasks of the worst
change from their best {metric} to their final one (Chaudhry et al. 2018).

![training and continual evaluation](plot.png)

## {name}: {metric} on task j (columns) after learning tasks 1..i (rows)

{_matrix_table(m['matrix'], 'T', 'before')}

## Baseline

{_matrix_table(b['matrix'], 'T', 'before')}
"""
    return atomic_write_text(folder / "report.md", text)
