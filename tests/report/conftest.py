"""A small `lifelong compare` output shared by the report tests, and the CLI with this area's commands."""

from __future__ import annotations

import pytest

from lifelong.continual.compare import compare
from lifelong.core.config import RunConfig

SMALL = dict(benchmark="split-digits", scenario="class", limit_train=300, limit_test=150, epochs=1,
             batch_size=32, model_args={"hidden": [32]})


@pytest.fixture(scope="session")
def compared(tmp_path_factory):
    """naive, replay (buffer size chosen on validation) and cumulative over seeds 0 and 1, with its report."""
    from lifelong.report.compare import report_compare_folder

    out = tmp_path_factory.mktemp("compared")
    compare(["naive", "replay", "cumulative"], RunConfig(**SMALL), seeds=[0, 1], out=out, jobs=2,
            grid={"replay.buffer_size": [20, 60]})
    report_compare_folder(out, "Small comparison")
    return out


@pytest.fixture(scope="session")
def cli_main():
    """`lifelong.cli.main` with advise, compare and report registered (as the main CLI does)."""
    from lifelong import cli
    from lifelong.report.cli import register

    if not any(c.name == "advise" for c in cli.app.registered_commands):
        register(cli.app)
    return cli.main
