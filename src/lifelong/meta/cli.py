"""`lifelong meta`: meta-train OML, ANML or prototypes, then evaluate on a continual stream."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from lifelong.core.config import parse_overrides
from lifelong.core.errors import ConfigError
from lifelong.meta.methods import BENCHMARKS, METHODS


def split_overrides(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Method arguments (`key=value`) and benchmark arguments (`benchmark.key=value`), flat."""
    args = parse_overrides(items)
    benchmark_args = args.pop("benchmark", {})
    if not isinstance(benchmark_args, dict):
        raise ConfigError(f"override benchmark={benchmark_args!r} sets no argument; choose the "
                          "benchmark with --benchmark and give its arguments as benchmark.key=value")
    nested = [key for key, value in args.items() if isinstance(value, dict)]
    nested += [f"benchmark.{key}" for key, value in benchmark_args.items() if isinstance(value, dict)]
    if nested:
        raise ConfigError(f"overrides {nested} have dotted keys below them, but every argument is a "
                          "single value: write key=value for the method and benchmark.key=value "
                          "for the benchmark")
    return args, benchmark_args


def register(app: typer.Typer) -> None:
    """Add the `meta` command to the main Typer app."""

    @app.command("meta")
    def meta(
        method: Annotated[str, typer.Option(help=" | ".join(METHODS.names()))] = "oml",
        benchmark: Annotated[str, typer.Option(help=" | ".join(BENCHMARKS.names()))] = "sine",
        out: Annotated[str | None, typer.Option(
            help="run folder (default runs/meta-<method>-<benchmark>-s<seed>)")] = None,
        seed: Annotated[int, typer.Option()] = 0,
        threads: Annotated[int, typer.Option(
            min=1, help="torch CPU threads; the nets are small, so one is fastest")] = 1,
        overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
        overrides: Annotated[list[str] | None, typer.Argument(
            help="key=value method arguments (steps=200, meta_lr=0.001, hidden=128) and "
                 "benchmark.key=value benchmark arguments (benchmark.shots=10)")] = None,
    ) -> None:
        """Meta-train, then learn the meta-test stream online; write results.json and report.md."""
        import torch

        from lifelong.meta.run import run_meta

        torch.set_num_threads(threads)
        args, benchmark_args = split_overrides(overrides or [])
        folder = out or f"runs/meta-{method}-{benchmark}-s{seed}"
        console = Console(quiet=quiet)
        columns = (TextColumn("{task.description}"), BarColumn(),
                   TextColumn("step {task.completed:.0f}"), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=quiet, refresh_per_second=4) as bar:
            task = bar.add_task(f"{method} on {benchmark}", total=None)
            results = run_meta(
                method, benchmark, folder, seed=seed, method_args=args,
                benchmark_args=benchmark_args, overwrite=overwrite,
                progress=lambda step, loss: bar.update(
                    task, advance=1, description=f"{method} on {benchmark}, loss {loss:.4f}"),
            )
        metric = results["metric"]
        for key, label in (("result", results["method"]), ("baseline", "baseline")):
            r = results[key]
            console.print(f"{label}: final {metric} {r['final']:.4f}, "
                          f"forgetting {r['forgetting']:.4f}")
        console.print(f"report: {folder}/report.md")
