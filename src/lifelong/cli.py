"""The `lifelong` command line: run, list, datasets, demo (and the commands each area registers)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lifelong.core.allocator import keep_freed_memory
from lifelong.core.errors import LifelongError
from lifelong.core.registries import ALL

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Multi-task, continual, curriculum and meta-continual learning.")
console = Console()

# Areas that add their own commands through `register(app)`.
AREAS: tuple[str, ...] = ("lifelong.multitask.cli", "lifelong.curriculum.cli", "lifelong.meta.cli",
                          "lifelong.report.cli")


@app.command()
def run(
    benchmark: Annotated[str | None, typer.Option(help="<builder>-<source>, e.g. split-fashion-mnist")] = None,
    scenario: Annotated[str | None, typer.Option(help="task | domain | class")] = None,
    strategy: Annotated[str | None, typer.Option(help="registered name(s), e.g. ewc+replay")] = None,
    model: Annotated[str | None, typer.Option(help="backbone: mlp, lenet, resnet18")] = None,
    head: Annotated[str | None, typer.Option(help="single | multi | incremental")] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    out: Annotated[str | None, typer.Option(help="parent folder of the run folder")] = None,
    name: Annotated[str | None, typer.Option(help="run folder name")] = None,
    data_root: Annotated[str | None, typer.Option(help="folder holding the data set files")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config; flags and key=value win")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run from its checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    logger: Annotated[list[str] | None, typer.Option(
        help="also log live to tensorboard | wandb, under the --out folder (jsonl always)")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value, e.g. strategy_args.ewc_lambda=100")] = None,
) -> None:
    """Train a strategy over a continual benchmark and write runs/<name>/ with its report."""
    from lifelong.cli_progress import RichProgress
    from lifelong.continual.run import run as run_config
    from lifelong.core.config import load_config, merge, parse_overrides
    from lifelong.report.loggers import LiveLoggers, check_loggers
    from lifelong.report.run_report import METRICS, write_run_report

    check_loggers(logger or [])
    flags = {k: v for k, v in {
        "benchmark": benchmark, "scenario": scenario, "strategy": strategy, "model": model,
        "head": head, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
        "out": out, "name": name, "data_root": data_root}.items() if v is not None}
    cfg = load_config(config, merge(flags, parse_overrides(overrides or [])))
    live = LiveLoggers(logger, cfg.out, cfg.run_name()) if logger else None
    try:
        results = run_config(cfg, resume=resume, overwrite=overwrite,
                             progress=None if quiet else RichProgress(console), on_record=live)
        if live is not None:
            live.finish(results)
    finally:
        if live is not None:
            live.close()
    report = write_run_report(cfg.folder())
    if not quiet:
        table = Table(title=results["name"])
        for key in METRICS:
            table.add_column(key)
        table.add_row(*(f"{results['metrics'][k]:.3f}" for k in METRICS))
        console.print(table)
        console.print(f"report: {report}")


@app.command("list")
def list_names(
    pattern: Annotated[str, typer.Argument(help="wildcard, e.g. 'ewc*'")] = "*",
    kind: Annotated[str | None, typer.Option(help=f"one of: {', '.join(ALL)}")] = None,
) -> None:
    """List registered names (strategies, models, datasets, ...) matching a wildcard."""
    kinds = [kind] if kind else list(ALL)
    for k in kinds:
        if k not in ALL:
            raise LifelongError(f"unknown kind {k!r}; choose one of {', '.join(ALL)}")
        names = ALL[k].names(pattern)
        if names:
            console.print(f"[bold]{k}[/bold]: " + ", ".join(names))


@app.command()
def datasets() -> None:
    """Which data sets exist and whether their files are present on this machine."""
    from lifelong.data.sources import source_status

    table = Table(title="data sets")
    for column in ("name", "present", "where / how to get it"):
        table.add_column(column)
    for name in ALL["dataset"].names():
        status = source_status(name)
        if status["bundled"]:
            where = "bundled with scikit-learn"
        elif status["present"]:
            where = status["path"]
        else:
            where = f"put the files in {status['download_to']} or set LIFELONG_DATA; " \
                    f"downloaded on first use from {status['urls'][0] if status['urls'] else '?'}"
        table.add_row(name, "yes" if status["present"] else "no", where)
    console.print(table)


# One strategy per family of 37.13 against the baselines (fine-tuning, cumulative, joint).
DEMO_STRATEGIES = ("naive", "cumulative", "joint", "ewc", "lwf", "replay", "der++", "packnet", "curriculum",
                   "prototypes")


@app.command()
def demo(out: Annotated[Path, typer.Option()] = Path("runs/demo"),
         seeds: Annotated[int, typer.Option(help="seeds per strategy")] = 2,
         jobs: Annotated[int, typer.Option(help="worker processes")] = 2,
         quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False) -> None:
    """Class-incremental Split Digits: one strategy of each family, compared over seeds in one report."""
    from lifelong.cards import must_infer_task, strategy_card
    from lifelong.continual.compare import compare
    from lifelong.core.config import RunConfig
    from lifelong.report.compare import report_compare_folder

    base = RunConfig(benchmark="split-digits", scenario="class", epochs=5, batch_size=32)
    guessing = [n for n in DEMO_STRATEGIES if must_infer_task(strategy_card(n), task_labels=base.scenario == "task")]
    manifest = compare(DEMO_STRATEGIES, base, seeds=range(seeds), out=out, jobs=jobs,
                       strategy_args={n: {"infer_task": True} for n in guessing},
                       on_run=None if quiet else lambda r: console.print(
                           f"{Path(r['folder']).name}: {r.get('error', 'done')}", highlight=False))
    report = report_compare_folder(out, "Split Digits, class-incremental")
    console.print(f"report: {report} and {report.with_suffix('.html')}")
    if manifest["failures"]:
        raise LifelongError(f"{len(manifest['failures'])} demo run(s) failed; see {out}")


for _module in AREAS:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: typed errors become one line on stderr and exit code 2."""
    keep_freed_memory()
    try:
        app(args=argv, standalone_mode=False)
    except LifelongError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        Console(stderr=True).print("interrupted; run again with --resume to continue")
        return 130
    except Exception as exc:
        if not hasattr(exc, "show"):  # usage errors of the (vendored) click under typer
            raise
        exc.show()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
