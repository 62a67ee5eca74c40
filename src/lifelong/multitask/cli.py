"""`lifelong mtl`: train a multi-task benchmark, or diagnose conflicts, affinity and transfer."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add the `mtl` command to the main Typer app."""

    @app.command("mtl")
    def mtl(
        benchmark: Annotated[str, typer.Option(
            help="multi-fashion | multi-digits | mmoe-synthetic | scenes")] = "multi-digits",
        arch: Annotated[str, typer.Option(help="hps | soft | cross_stitch | mmoe | cgc | ple")] = "hps",
        weighting: Annotated[str, typer.Option(
            help="loss weighting or gradient aggregator, e.g. uniform, pcgrad, mgda")] = "uniform",
        epochs: Annotated[int, typer.Option()] = 5,
        batch_size: Annotated[int, typer.Option()] = 128,
        lr: Annotated[float, typer.Option()] = 1e-3,
        width: Annotated[int, typer.Option(help="trunk / expert width")] = 64,
        seed: Annotated[int, typer.Option()] = 0,
        n_train: Annotated[int | None, typer.Option(help="training samples (benchmarks that subsample)")] = None,
        conflict_every: Annotated[int, typer.Option(help="record gradient conflicts every N steps (0: off)")] = 0,
        diagnose: Annotated[bool, typer.Option(
            "--diagnose", help="conflicts, task affinity and negative-transfer report")] = False,
        affinity_every: Annotated[int, typer.Option(help="--diagnose: lookahead affinity every N steps")] = 5,
        baselines: Annotated[bool, typer.Option(help="--diagnose: train single-task baselines")] = True,
        out: Annotated[str, typer.Option(help="parent folder of the run folder")] = "runs",
        name: Annotated[str | None, typer.Option(help="run folder name")] = None,
        resume: Annotated[bool, typer.Option(help="continue an interrupted run")] = False,
        overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
        overrides: Annotated[list[str] | None, typer.Argument(
            help="key=value, e.g. arch_args.n_experts=4 train.micro_batch=32")] = None,
    ) -> None:
        """Train an architecture with a weighting on a multi-task benchmark; write runs/<name>/."""
        from lifelong.core.config import merge, parse_overrides
        from lifelong.core.errors import ConfigError
        from lifelong.data.multitask import BENCHMARKS
        from lifelong.multitask.diagnose import diagnose as run_diagnosis
        from lifelong.multitask.run import MTLConfig, run_mtl

        def sized(name: str) -> bool:
            return "n_train" in inspect.signature(BENCHMARKS.get(name)).parameters

        if n_train is not None and not sized(benchmark):
            raise ConfigError(f"--n-train sets the training size of {[b for b in BENCHMARKS.names() if sized(b)]}; "
                              f"{benchmark!r} has a fixed size: drop --n-train")

        values = {
            "benchmark": benchmark, "arch": arch, "weighting": weighting, "width": width,
            "seed": seed, "out": out, "name": name,
            "benchmark_args": {"n_train": n_train} if n_train is not None else {},
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                      "conflict_every": conflict_every},
        }
        config = MTLConfig.from_dict(merge(values, parse_overrides(overrides or [])))
        console = Console(quiet=quiet)
        bar = None
        if not quiet:
            from lifelong.cli_progress import RichProgress

            bar = RichProgress(console)
            bar.start(f"{config.arch} + {config.weighting} on {config.benchmark}", config.train.epochs)

        def tick(trainer) -> None:  # noqa: ANN001
            if bar is not None:
                bar.advance()

        try:
            if diagnose:
                results = run_diagnosis(config, affinity_every=affinity_every, baselines=baselines,
                                        resume=resume, overwrite=overwrite, on_epoch=tick)
            else:
                results = run_mtl(config, resume=resume, overwrite=overwrite, on_epoch=tick)
        finally:
            if bar is not None:
                bar.stop()
        table = Table(title=f"{results['name']} — final test metrics")
        table.add_column("task")
        table.add_column("metrics")
        for task, metrics in results["final"].items():
            table.add_row(task, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        console.print(table)
        diag = results.get("diagnostics")
        if diag and diag.get("transfer"):
            console.print(f"Δm vs single-task baselines: {diag['transfer']['delta_m']:+.2f}%")
        console.print(f"run folder: {config.out}/{results['name']}")
