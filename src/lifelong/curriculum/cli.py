"""`lifelong curriculum`: train with a curriculum and with random order; write one report folder."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

import lifelong.curriculum  # noqa: F401  (registers scorers, pacings and the curriculum strategies)


def register(app: typer.Typer) -> None:
    """Add the `curriculum` command to the main Typer app."""

    @app.command("curriculum")
    def curriculum(
        dataset: Annotated[str, typer.Option(help="digits, fashion-mnist, mnist, ...")] = "digits",
        scorer: Annotated[str, typer.Option(help="loss | confidence | margin | length | transfer | ...")] = "loss",
        pacing: Annotated[str, typer.Option(help="linear | root | competence | step | exponential | ...")] = "root",
        anti: Annotated[bool, typer.Option("--anti", help="hardest examples first")] = False,
        epochs: Annotated[int, typer.Option(help="training budget in epochs' worth of examples")] = 10,
        seed: Annotated[int, typer.Option()] = 0,
        out: Annotated[str | None, typer.Option(help="run folder (default runs/<generated name>)")] = None,
        c0: Annotated[float, typer.Option(help="starting fraction of the data")] = 0.1,
        pace_until: Annotated[float, typer.Option(help="fraction of the budget after which all data is used")] = 0.5,
        label_noise: Annotated[float, typer.Option(help="fraction of training labels to corrupt")] = 0.0,
        balanced: Annotated[bool, typer.Option(help="rank difficulty within each class")] = True,
        rescore_every: Annotated[float, typer.Option(help="re-score every this many epochs (0: once)")] = 1.0,
        batch_size: Annotated[int, typer.Option()] = 32,
        lr: Annotated[float, typer.Option()] = 1e-3,
        limit_train: Annotated[int | None, typer.Option(help="subsample the training set")] = None,
        overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    ) -> None:
        """Train with a curriculum and with random order; write results.json and report.md with plots."""
        from lifelong.cli_progress import RichProgress
        from lifelong.core.registries import SCORERS
        from lifelong.curriculum.run import CurriculumConfig, run_curriculum

        config = CurriculumConfig(
            dataset=dataset, scorer=scorer, pacing=pacing, c0=c0, pace_until=pace_until, anti=anti,
            balanced=balanced, rescore_every=rescore_every, label_noise=label_noise, epochs=epochs,
            batch_size=batch_size, lr=lr, limit_train=limit_train, seed=seed)
        folder = out or f"runs/{config.run_name()}"
        console = Console(quiet=quiet)
        bar = None if quiet else RichProgress(console)
        if bar is not None:
            teacher = bool(SCORERS.meta(scorer).get("needs_teacher"))
            bar.start(f"curriculum vs random on {dataset}", 2 * config.n_evals + teacher)
        try:
            results = run_curriculum(config, folder, overwrite=overwrite,
                                     progress=None if bar is None else lambda seen: bar.advance())
        finally:
            if bar is not None:
                bar.stop()
        for name, summary in results["summary"].items():
            console.print(f"{name}: final test accuracy {summary['final']:.3f}, "
                          f"mean over the curve {summary['mean']:.3f}")
        console.print(f"report: {folder}/report.md")
