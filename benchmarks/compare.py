"""`lifelong compare` against a hand-written loop calling `run()` for each strategy and seed in turn.

Same runs (Split Digits, class-incremental, 5 epochs, batch 32, seeds 0-1): the hand-written loop
trains them one after another in this process; `compare` runs each in its own worker process
(what it costs: a fork per run; what it buys: parallel runs, clean per-run peak memory, resuming).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import markdown_table

from lifelong.continual.compare import compare
from lifelong.continual.run import run
from lifelong.core.config import RunConfig

STRATEGIES = ("naive", "ewc", "lwf", "replay")
SEEDS = (0, 1)
BASE = RunConfig(benchmark="split-digits", scenario="class", epochs=5, batch_size=32)


def hand_written(out: Path) -> float:
    """Every run in turn, in this process."""
    start = time.perf_counter()
    for strategy in STRATEGIES:
        for seed in SEEDS:
            config = RunConfig.from_dict({**BASE.to_dict(), "strategy": strategy, "seed": seed,
                                          "out": str(out), "name": f"{strategy}-s{seed}"})
            run(config)
    return time.perf_counter() - start


def with_compare(out: Path, jobs: int) -> float:
    """The same runs through `compare` with `jobs` workers."""
    start = time.perf_counter()
    compare(list(STRATEGIES), BASE, seeds=list(SEEDS), out=out, jobs=jobs)
    return time.perf_counter() - start


def main() -> list[dict[str, Any]]:
    """Time the three ways; print a markdown table; return its rows."""
    torch.set_num_threads(1)  # as in compare's workers: small models run fastest on one thread
    root = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    try:
        with_compare(root / "warm", 1)  # starts the worker server once, as a CLI session would
        run(RunConfig.from_dict({**BASE.to_dict(), "out": str(root / "warm-here")}))  # and imports here
        baseline = hand_written(root / "hand")
        rows = [{"method": "hand-written sequential run() loop", "seconds": baseline, "ratio": 1.0}]
        for jobs in (1, 2):
            seconds = with_compare(root / f"jobs{jobs}", jobs)
            rows.append({"method": f"compare --jobs {jobs}", "seconds": seconds, "ratio": seconds / baseline})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{len(STRATEGIES)} strategies × {len(SEEDS)} seeds on Split Digits\n")
    print(markdown_table(rows, ["method", "seconds", "ratio"]))
    return rows


if __name__ == "__main__":
    main()
