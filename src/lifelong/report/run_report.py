"""Markdown report of one continual run, and the metrics table the comparison report reuses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lifelong.core.records import atomic_write_text, read_json
from lifelong.report.plots import accuracy_heatmap, experience_curves

METRICS = ("acc", "bwt", "fwt", "forgetting", "learning_accuracy")


def _matrix_table(matrix: Sequence[Sequence[float]], label: str = "E", first: str = "untrained") -> str:
    """Markdown table of a (T+1) × T matrix: columns `<label>j`, rows `first` then `<label>i`."""
    cols = len(matrix[0])
    lines = ["| after \\ on | " + " | ".join(f"{label}{j + 1}" for j in range(cols)) + " |",
             "|---" * (cols + 1) + "|"]
    for i, row in enumerate(matrix):
        name = f"{label}{i}" if i else first
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


def metrics_table(results: Sequence[dict[str, Any]]) -> str:
    """One markdown row per run: metrics, wall time, parameters."""
    head = "| run | " + " | ".join(METRICS) + " | seconds | parameters |"
    lines = [head, "|---" * (len(METRICS) + 3) + "|"]
    for r in results:
        values = " | ".join(f"{r['metrics'][m]:+.3f}" if m in ("bwt", "fwt") else f"{r['metrics'][m]:.3f}"
                            for m in METRICS)
        lines.append(f"| {r['name']} | {values} | {r['timings']['total_seconds']:.1f} | "
                     f"{r['parameters']:,} |")
    return "\n".join(lines)


def write_run_report(folder: str | Path) -> Path:
    """report.md with the metrics, the annotated heatmap and the per-experience curves of one run."""
    folder = Path(folder)
    results = read_json(folder / "results.json")
    accuracy_heatmap(results["accuracy_matrix"], folder / "accuracy_matrix.png", results["name"])
    experience_curves({results["name"]: results["accuracy_matrix"]}, folder / "curves.png")
    cfg = results["config"]
    text = f"""# {results['name']}

`{cfg['strategy']}` on `{cfg['benchmark']}` ({cfg['scenario']}-incremental), model `{cfg['model']}`
(head `{cfg['head']}`), {cfg['epochs']} epoch(s) per experience, batch {cfg['batch_size']},
lr {cfg['lr']}, seed {cfg['seed']}.

{metrics_table([results])}

ACC: mean final accuracy; BWT: mean change on earlier experiences since learning them
(negative = forgetting); FWT: accuracy on an experience before training on it, minus the untrained
model's; forgetting: mean drop from the best accuracy; learning accuracy: accuracy just after
learning each experience.

## Accuracy matrix

Row *i* is measured after training experience *i* (row 0: the untrained model); column *j* is
experience *j*'s test set.

![accuracy matrix](accuracy_matrix.png)

{_matrix_table(results['accuracy_matrix'])}

## Accuracy on each experience during training

![curves](curves.png)
"""
    return atomic_write_text(folder / "report.md", text)
