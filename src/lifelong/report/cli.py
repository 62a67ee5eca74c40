"""`lifelong advise | compare | report`: choose a method, measure the candidates, rebuild reports."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lifelong.core.errors import ConfigError, DataError, LifelongError
from lifelong.guide import Answers

BUDGETS = ("low", "medium", "high")
# The guide's questions: answer field → what is asked.
QUESTIONS = {
    "tasks": "How many tasks (experiences) do you expect?",
    "storage": "May samples of old tasks be stored (no for privacy or storage limits)?",
    "zero_forgetting": "Is zero forgetting required (safety-critical)?",
    "task_labels": "Is the task identity known at test time?",
    "pretrained": "Do you start from a pre-trained foundation model?",
    "memory": "Memory budget (low, medium, high)?",
    "compute": "Compute budget (low, medium, high)?",
    "fixed_architecture": "Must the model stay one network, without architectural changes?",
    "tasks_known": "Do you know the total number of tasks in advance?",
}


def resolve_answers(given: dict[str, Any], interactive: bool, prompt: Callable[..., Any] = typer.prompt,
                    confirm: Callable[..., bool] = typer.confirm) -> Answers:
    """Answers from the flags given; missing ones are asked when interactive, else take the defaults."""
    defaults = Answers()
    values = {}
    for f in fields(Answers):
        value = given.get(f.name)
        if value is None:
            default = getattr(defaults, f.name)
            if not interactive:
                value = default
            elif isinstance(default, bool):
                value = confirm(QUESTIONS[f.name], default=default)
            else:
                value = prompt(QUESTIONS[f.name], default=default, type=type(default))
        values[f.name] = value
    for budget in ("memory", "compute"):
        if values[budget] not in BUDGETS:
            raise ConfigError(f"--{budget} {values[budget]!r} is not one of {', '.join(BUDGETS)}")
    if values["tasks"] < 1:
        raise ConfigError(f"--tasks {values['tasks']} must be at least 1")
    return Answers(**values)


def parse_seeds(text: str) -> list[int]:
    """`3` → seeds 0, 1, 2; `0,5,7` → those seeds."""
    try:
        return list(range(int(text))) if "," not in text else [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise ConfigError(f"--seeds {text!r}: give a count (3) or a list (0,5,7)") from exc


def split_overrides(items: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """key=value items → (run settings, {strategy: arguments}), each key classified by `strategy_of_key`."""
    from lifelong.continual.selection import strategy_of_key
    from lifelong.core.config import parse_overrides

    settings = [i for i in items if "=" not in i or strategy_of_key(i.partition("=")[0]) is None]
    return parse_overrides(settings), parse_overrides([i for i in items if i not in settings])


def logged_runs(run_dirs: list[Path], out: Path | None) -> list[tuple[Path, Path]]:
    """(run folder, folder its logs go to) of each run `lifelong report` read, a comparison's runs included."""
    from lifelong.continual.compare import MANIFEST
    from lifelong.report.measures import manifest_run_folders, read_manifest

    pairs = []
    for folder in run_dirs:
        if (folder / "results.json").exists():
            pairs.append((folder, out or folder))
        elif (folder / MANIFEST).exists():
            runs = manifest_run_folders(folder, read_manifest(folder)).values()
            pairs += [(run, out or folder) for group in runs for run in group]
    return pairs


def register(app: typer.Typer) -> None:
    """Add `advise`, `compare` and `report` to the main Typer app."""
    console = Console()

    @app.command("advise")
    def advise(
        tasks: Annotated[int | None, typer.Option(help="number of tasks expected")] = None,
        storage: Annotated[bool | None, typer.Option(
            "--storage/--no-storage", help="may old data be stored (--no-storage: privacy)")] = None,
        zero_forgetting: Annotated[bool | None, typer.Option(
            "--zero-forgetting/--forgetting-ok", help="must old tasks never be forgotten")] = None,
        task_labels: Annotated[bool | None, typer.Option(
            "--task-labels/--no-task-labels", help="is the task identity known at test time")] = None,
        pretrained: Annotated[bool | None, typer.Option(
            "--pretrained/--from-scratch", help="starting from a pre-trained foundation model")] = None,
        memory: Annotated[str | None, typer.Option(help="memory budget: low | medium | high")] = None,
        compute: Annotated[str | None, typer.Option(help="compute budget: low | medium | high")] = None,
        fixed_architecture: Annotated[bool | None, typer.Option(
            "--fixed-architecture/--architecture-may-change",
            help="must the model stay one network without architectural changes")] = None,
        tasks_known: Annotated[bool | None, typer.Option(
            "--tasks-known/--tasks-unknown", help="is the total number of tasks known in advance")] = None,
        benchmark: Annotated[str, typer.Option(help="benchmark for the suggested compare command")] = "split-digits",
        top: Annotated[int, typer.Option(help="candidates in the suggested compare command")] = 3,
        interactive: Annotated[bool | None, typer.Option(
            "--interactive/--no-interactive", help="ask missing answers (default: when stdin is a terminal)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the ranking as JSON")] = False,
    ) -> None:
        """Rank the registered strategies for your constraints (seed 37.13), with the reason for each."""
        from lifelong.guide import advise as rank
        from lifelong.guide import compare_command

        given = {"tasks": tasks, "storage": storage, "zero_forgetting": zero_forgetting,
                 "task_labels": task_labels, "pretrained": pretrained, "memory": memory, "compute": compute,
                 "fixed_architecture": fixed_architecture, "tasks_known": tasks_known}
        answers = resolve_answers(given, sys.stdin.isatty() if interactive is None else interactive)
        ranked = rank(answers)
        command = compare_command(ranked, answers, top=top, benchmark=benchmark)
        if as_json:
            typer.echo(json.dumps({"answers": asdict(answers), "command": command, "ranking": [
                {"name": a.name, "family": a.card["family"], "score": a.score, "excluded": a.excluded,
                 "reasons": a.reasons} for a in ranked]}, indent=2))
            return
        table = Table(title="Strategies for: " + ", ".join(f"{k}={v}" for k, v in asdict(answers).items()))
        for column in ("#", "method", "family", "score", "why"):
            table.add_column(column)
        for i, a in enumerate(ranked, 1):
            table.add_row(str(i), a.name, str(a.card["family"]), "excluded" if a.excluded else f"{a.score:+g}",
                          "\n".join(a.reasons) or "no rule applies", style="dim" if a.excluded else None)
        console.print(table)
        console.print("Measure the top candidates on your data:")
        typer.echo(command)

    @app.command("compare")
    def compare(
        strategies: Annotated[str, typer.Option(help="comma-separated, e.g. naive,ewc,replay,ewc+replay")],
        benchmark: Annotated[str | None, typer.Option(help="<builder>-<source>, e.g. split-digits")] = None,
        scenario: Annotated[str | None, typer.Option(help="task | domain | class")] = None,
        seeds: Annotated[str, typer.Option(help="a count (3 → 0,1,2) or a list (0,5,7)")] = "3",
        jobs: Annotated[int, typer.Option(help="worker processes")] = 1,
        out: Annotated[Path, typer.Option(help="folder of the runs and the report")] = Path("runs/compare"),
        model: Annotated[str | None, typer.Option()] = None,
        head: Annotated[str | None, typer.Option()] = None,
        epochs: Annotated[int | None, typer.Option()] = None,
        batch_size: Annotated[int | None, typer.Option()] = None,
        lr: Annotated[float | None, typer.Option()] = None,
        limit_train: Annotated[int | None, typer.Option(help="training samples kept (a seeded subset)")] = None,
        limit_test: Annotated[int | None, typer.Option(help="test samples kept")] = None,
        data_root: Annotated[str | None, typer.Option(help="folder holding the data set files")] = None,
        config: Annotated[Path | None, typer.Option(help="YAML base config; flags and key=value win")] = None,
        grid: Annotated[list[str] | None, typer.Option(
            help="<strategy>.<arg>=v1,v2 or <setting>=v1,v2, chosen on a validation split; repeatable")] = None,
        val_fraction: Annotated[float, typer.Option(help="training data held out to choose grid points")] = 0.2,
        logger: Annotated[list[str] | None, typer.Option(help="tensorboard | wandb (jsonl always)")] = None,
        title: Annotated[str | None, typer.Option()] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
        overrides: Annotated[list[str] | None, typer.Argument(
            help="run settings (epochs=2) or strategy arguments (hat.infer_task=true)")] = None,
    ) -> None:
        """Run strategies × seeds (× grid) in parallel, resumably, and write one comparison report."""
        from lifelong.continual.compare import compare as run_compare
        from lifelong.continual.selection import parse_grid
        from lifelong.core.config import load_config, merge
        from lifelong.report.compare import report_compare_folder
        from lifelong.report.loggers import check_loggers, log_run

        check_loggers(logger or [])
        run_values, strategy_args = split_overrides(overrides or [])
        flags = {k: v for k, v in {
            "benchmark": benchmark, "scenario": scenario, "model": model, "head": head, "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "limit_train": limit_train, "limit_test": limit_test,
            "data_root": data_root}.items() if v is not None}
        base = load_config(config, merge(flags, run_values))
        names = [s.strip() for s in strategies.split(",") if s.strip()]

        def on_run(record: dict[str, Any]) -> None:
            folder = Path(record["folder"])
            if not ("error" in record or record.get("skipped")) and folder.parent == out / "runs":
                log_run(folder, logger or [], out, run=folder.name)
            if not quiet:
                state = "failed: " + record["error"] if "error" in record else (
                    "finished before" if record.get("skipped") else "done")
                console.print(f"{folder.relative_to(out)}: {state}", highlight=False, soft_wrap=True)

        manifest = run_compare(names, base, seeds=parse_seeds(seeds), out=out, jobs=jobs,
                               grid=parse_grid(grid or []), strategy_args=strategy_args,
                               val_fraction=val_fraction, on_run=on_run)
        report = report_compare_folder(out, title) if any(manifest["runs"].values()) else None
        if report and not quiet:
            console.print(f"report: {report} and {report.with_suffix('.html')}")
        if manifest["failures"]:
            raise LifelongError(f"{len(manifest['failures'])} run(s) failed: " + "; ".join(
                f"{f['folder']}: {f['error']}" for f in manifest["failures"]) + "; fix them and rerun to resume")

    @app.command("report")
    def report(
        run_dirs: Annotated[list[Path], typer.Argument(help="run folders, or one `lifelong compare` folder")],
        out: Annotated[Path | None, typer.Option(help="folder of a comparison report")] = None,
        title: Annotated[str | None, typer.Option()] = None,
        logger: Annotated[list[str] | None, typer.Option(help="also log the runs: tensorboard | wandb")] = None,
    ) -> None:
        """Rebuild reports (markdown, HTML, CSV) from finished runs: one run, or several compared."""
        from lifelong.continual.compare import MANIFEST
        from lifelong.report.compare import report_compare_folder, report_runs, report_single_run
        from lifelong.report.loggers import check_loggers, log_run

        check_loggers(logger or [])
        for folder in run_dirs:
            if not ((folder / "results.json").exists() or (folder / MANIFEST).exists()):
                raise DataError(f"{folder} holds neither results.json (a run) nor {MANIFEST} (a comparison)")
        if len(run_dirs) == 1 and (run_dirs[0] / MANIFEST).exists():
            path = report_compare_folder(run_dirs[0], title)
        elif len(run_dirs) == 1:
            path = report_single_run(run_dirs[0])
        else:
            path = report_runs(run_dirs, out or run_dirs[0].parent / "comparison", title or "Comparison")
        for folder, log_dir in logged_runs(run_dirs, out) if logger else ():
            log_run(folder, logger, log_dir)
        console.print(f"report: {path} and {path.with_suffix('.html')}")
