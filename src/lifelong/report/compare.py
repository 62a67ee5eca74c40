"""The comparison report: measured table, the chapter's comparison table regenerated, plots, CSV.

`report.md` (with PNGs beside it), `report.html` (self-contained), `summary.csv` (one row per
strategy, mean and std over seeds) and `runs.csv` (one row per run).
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lifelong.cards import UNKNOWN, is_fine_tuning
from lifelong.core.errors import DataError
from lifelong.core.records import atomic_write_text
from lifelong.report.comparison_plots import forgetting_plot, pareto_plot
from lifelong.report.html import write_html
from lifelong.report.measures import MEASURED, group_runs, load_run, manifest_groups, mean_std, summarise
from lifelong.report.plots import accuracy_heatmap, experience_curves
from lifelong.report.run_report import metrics_table, write_run_report

# Measured value → the chapter's words: the first bound the value does not exceed.
FORGETTING_WORDS = ((0.01, "None"), (0.05, "Very Low"), (0.15, "Low"), (0.40, "Moderate"), (float("inf"), "Severe"))
TRANSFER_WORDS = ((0.02, "None"), (0.10, "Low"), (0.30, "Moderate"), (float("inf"), "High"))
COMPUTE_WORDS = ((1.5, "Low"), (4.0, "Medium"), (float("inf"), "High"))  # × fine-tuning's time
GROWTH_LIMIT = 2.0  # later experiences train this many times slower than earlier ones: cost grows with T
PER_IMAGE = 4  # strategies per experience-curves image


def word(value: float, scale: Sequence[tuple[float, str]]) -> str:
    """The word of `scale` for `value`."""
    return next(w for bound, w in scale if value <= bound)


def size(n: float | None) -> str:
    """Bytes for people: 1.5 MB."""
    if n is None:
        return UNKNOWN
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _cell(key: str, value: tuple[float | None, float | None], n: int) -> str:
    mean, std = value
    if mean is None:
        return UNKNOWN
    show = {"stored_bytes": size, "parameters": lambda v: f"{v:,.0f}", "seconds": lambda v: f"{v:.2f}",
            "peak_memory_mb": lambda v: f"{v:.0f}", "bwt": lambda v: f"{v:+.3f}",
            "fwt": lambda v: f"{v:+.3f}"}.get(key, lambda v: f"{v:.3f}")
    return show(mean) + (f" ± {show(std).lstrip('+')}" if n > 1 else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def measured_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per strategy, every measured quantity as mean ± std over seeds."""
    return _table(["Method", "Seeds", *(title for _, title in MEASURED)],
                  [[r["label"], str(len(r["seeds"])), *(_cell(k, r[k], len(r["seeds"])) for k, _ in MEASURED)]
                   for r in rows])


def reference_seconds(rows: Sequence[Mapping[str, Any]]) -> float:
    """Wall time that compute costs are relative to: fine-tuning's (a baseline storing nothing), else the median."""
    plain = [r["seconds"][0] for r in rows if is_fine_tuning(r["card"])]
    times = sorted(r["seconds"][0] for r in rows if r["seconds"][0])
    return statistics.fmean(plain) if plain else (times[len(times) // 2] if times else 1.0)


def chapter_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """37.13's comparison table with every column derived from these measurements (see the legend)."""
    reference = reference_seconds(rows)
    out = []
    for r in rows:
        card = r["card"]
        ratio = (r["seconds"][0] or reference) / reference
        compute = word(ratio, COMPUTE_WORDS)
        grows = card["memory_growth"] == "O(T)" or r["train_growth"] > GROWTH_LIMIT
        scalability = "Low" if grows else ("Medium" if compute == "High" else "High")
        out.append([
            r["label"], str(card["family"]).capitalize(), f"{card['memory']} = {size(r['stored_bytes'][0])}",
            f"{compute} (×{ratio:.1f})", word(r["forgetting"][0], FORGETTING_WORDS),
            word(r["fwt"][0], TRANSFER_WORDS), scalability,
        ])
    return out


CHAPTER_LEGEND = """Each column is derived from the measurements above: **Memory Cost** is the
strategy's declared cost (T = tasks, buffer = replay buffer, params = model parameters) with the
bytes it stored in this run; **Compute Cost** is its wall time over fine-tuning's (a baseline that
stores nothing; else the median strategy's): Low ≤ 1.5×, Medium ≤ 4×, High above; **Forgetting**
maps the measured forgetting (None ≤ 0.01, Very Low ≤ 0.05, Low ≤ 0.15, Moderate ≤ 0.40, Severe
above); **Forward Transfer** maps FWT (None ≤ 0.02, Low ≤ 0.10, Moderate ≤ 0.30, High above);
**Scalability** is Low when memory grows with T or later experiences train more than twice as
slowly as earlier ones, Medium when compute is High, High otherwise."""


def setting(groups: Mapping[str, Sequence[Mapping[str, Any]]], key: str) -> str:
    """The groups' value of a run setting, or each group's value when they differ."""
    values = {label: runs[0]["config"][key] for label, runs in groups.items()}
    if len({json.dumps(v, sort_keys=True) for v in values.values()}) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{v} ({label})" for label, v in values.items())


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def _selection_section(selection: Mapping[str, Any]) -> str:
    parts = []
    for label, sel in selection.items():
        rows = []
        for i, row in enumerate(sel["points"]):
            scores = row["val_acc"]
            mean, _ = mean_std(scores)
            mark = " **chosen**" if i == sel["chosen"] else ""
            point = ", ".join(f"{k}={v}" for k, v in row["point"].items())
            rows.append([f"{point}{mark}", "—" if mean is None else f"{mean:.3f}", str(len(scores))])
        parts.append(f"### {label}\n\n" + _table(["Grid point", "Validation ACC (mean)", "Seeds"], rows))
    return "\n\n".join(parts)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV of `rows` under `header`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_csvs(groups: Mapping[str, Sequence[Mapping[str, Any]]], rows: Sequence[Mapping[str, Any]],
               out: Path) -> tuple[Path, Path]:
    """summary.csv (per strategy: mean and std of each quantity) and runs.csv (per run)."""
    keys = [k for k, _ in MEASURED]
    summary = csv_text(["method", "family", "seeds", *(f"{k}_{s}" for k in keys for s in ("mean", "std"))],
                       [[r["label"], r["card"]["family"], len(r["seeds"]), *(v for k in keys for v in r[k])]
                        for r in rows])
    runs = csv_text(["method", "seed", *keys, "folder"],
                    [[label, run["seed"], *(run["values"][k] for k in keys), run["folder"]]
                     for label, group in groups.items() for run in group])
    return atomic_write_text(out / "summary.csv", summary), atomic_write_text(out / "runs.csv", runs)


def write_compare_report(groups: Mapping[str, Sequence[Mapping[str, Any]]], out: str | Path,
                         title: str = "Comparison", selection: Mapping[str, Any] | None = None,
                         failures: Sequence[Mapping[str, Any]] = ()) -> Path:
    """report.md, report.html, summary.csv and runs.csv comparing groups of runs; returns report.md."""
    out = Path(out)
    if not groups:
        raise DataError(f"no finished runs to report in {out}; see the failures in {out / 'compare.json'}")
    rows = summarise(groups)
    first = next(iter(groups.values()))[0]["config"]
    pareto_plot(rows, out / "pareto.png")
    forgetting_plot(rows, out / "forgetting.png")
    heatmaps = []
    for r in rows:
        image = f"matrix-{_slug(r['label'])}.png"
        accuracy_heatmap(r["matrix"], out / image, f"{r['label']} (mean of {len(r['seeds'])})")
        heatmaps.append(f"![{r['label']}]({image})")
    curves = []
    for start in range(0, len(rows), PER_IMAGE):
        image = f"curves-{start // PER_IMAGE + 1}.png"
        experience_curves({r["label"]: r["matrix"] for r in rows[start:start + PER_IMAGE]}, out / image)
        curves.append(f"![accuracy on each experience]({image})")
    seeds = sorted({s for r in rows for s in r["seeds"]})
    sections = [
        f"# {title}",
        f"`{first['benchmark']}` ({first['scenario']}-incremental), model `{first['model']}` (head "
        f"`{first['head']}`), {setting(groups, 'epochs')} epoch(s) per experience, batch "
        f"{setting(groups, 'batch_size')}, lr {setting(groups, 'lr')}; seeds {', '.join(map(str, seeds))}. "
        "Values are mean ± std over seeds.",
        "## Measurements", measured_table(rows),
        "ACC: mean final accuracy; BWT: mean change on earlier experiences since learning them (negative = "
        "forgetting); FWT: accuracy on an experience before training on it, minus the untrained model's; "
        "forgetting: mean drop from the best accuracy; stored: bytes the strategy keeps (its plugin state, "
        "plus the training data when it keeps every sample); peak memory: the run process's resident peak.",
        "## The chapter's comparison table, from these measurements",
        _table(["Method", "Category", "Memory Cost", "Compute Cost", "Forgetting", "Forward Transfer",
                "Scalability"], chapter_rows(rows)),
        CHAPTER_LEGEND,
        "## Accuracy against time", "![accuracy against time](pareto.png)",
        "## Forgetting as experiences arrive", "![forgetting curves](forgetting.png)",
        "## Accuracy matrices", "Mean over seeds; row *i* after training experience *i* (row 0: untrained).",
        " ".join(heatmaps),
        "## Accuracy on each experience during training", "\n\n".join(curves),
    ]
    if selection:
        sections += ["## Hyper-parameters chosen on validation",
                     "Each grid point ran on a validation split carved from the training data (never the "
                     "test set); the chosen point was then rerun on the real split.", _selection_section(selection)]
    if failures:
        sections += ["## Failed runs", _table(["Run", "Error"], [[f["folder"], f["error"]] for f in failures])]
    sections += ["## All runs", metrics_table([run for group in groups.values() for run in group])]
    report = atomic_write_text(out / "report.md", "\n\n".join(sections) + "\n")
    write_csvs(groups, rows, out)
    write_html(report, title)
    return report


def report_compare_folder(out: str | Path, title: str | None = None) -> Path:
    """Rebuild the report of a `lifelong compare` folder from its manifest and run folders."""
    groups, manifest = manifest_groups(out)
    base = manifest["base"]
    return write_compare_report(groups, out, title or f"{base['benchmark']} ({base['scenario']}-incremental)",
                                manifest.get("selection"), manifest.get("failures", ()))


def report_runs(folders: Sequence[str | Path], out: str | Path, title: str = "Comparison") -> Path:
    """A comparison report of finished run folders (seeds of one configuration are averaged)."""
    return write_compare_report(group_runs([load_run(f) for f in folders]), out, title)


def report_single_run(folder: str | Path) -> Path:
    """Rebuild one run's report.md (with its plots), report.html and its CSV rows."""
    folder = Path(folder)
    groups = group_runs([load_run(folder)])
    report = write_run_report(folder)
    write_csvs(groups, summarise(groups), folder)
    write_html(report)
    return report
