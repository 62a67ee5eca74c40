"""A meta-continual run: meta-train a method, evaluate it and its baseline, write `runs/<name>/`.

`results.json` schema (version 1): `{"schema_version": 1, "name", "method", "benchmark", "seed",
"config": {"method_args", "benchmark_args"}, "metric": "mse" | "accuracy", "meta_trained",
"result" | "baseline": {"metric", "final", "forgetting", "matrix"}, "timings", "versions"}`.
`metrics.jsonl` has one line per training step (`{"phase": "train", "step", "loss"}`) and per
point of the stream (`{"phase": "stream", "learner", "tasks_learned", "values"}`: the metric
on every task); `report.md` shows both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifelong.continual.run import versions
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.records import append_jsonl, atomic_write_json, atomic_write_yaml, prepare_run_folder
from lifelong.core.seeding import seed_everything
from lifelong.meta.benchmark import MetaBenchmark
from lifelong.meta.evaluation import StreamResult, run_stream
from lifelong.meta.methods import BENCHMARKS, METHODS, Method
from lifelong.meta.report import write_report

SCHEMA_VERSION = 1


def build_benchmark(benchmark: str, seed: int, args: dict[str, Any]) -> MetaBenchmark:
    """The benchmark seeded with the run's seed; `args` may not set the seed again."""
    if "seed" in args:
        raise ConfigError(f"benchmark.seed={args['seed']!r}: the benchmark takes the run's seed; "
                          "set it with --seed (run_meta's seed=) instead")
    return BENCHMARKS.build(benchmark, seed, **args)


def build_method(method: str, bench: MetaBenchmark, args: dict[str, Any]) -> Method:
    """The method with every argument checked and its networks built, for a compatible benchmark."""
    kinds = METHODS.meta(method)["kinds"]
    if bench.objective.kind not in kinds:
        supported = [b for b in BENCHMARKS.names() if BENCHMARKS.meta(b)["kind"] in kinds]
        raise IncompatibleError(f"method {method!r} handles {', '.join(kinds)} benchmarks, not the "
                                f"{bench.objective.kind} benchmark {bench.name!r}; try one of "
                                f"{supported}")
    return METHODS.build(method, bench, **args)


def log_streams(log: Path, outcomes: dict[str, StreamResult]) -> None:
    """One metrics.jsonl line per learner and point of the stream: the metric on every task."""
    for key, outcome in outcomes.items():
        for i, row in enumerate(outcome.matrix.tolist()):
            append_jsonl(log, {"phase": "stream", "learner": key, "tasks_learned": i,
                               "values": row})


def run_meta(method: str, benchmark: str, out: str | Path, *, seed: int = 0,
             method_args: dict[str, Any] | None = None,
             benchmark_args: dict[str, Any] | None = None, overwrite: bool = False,
             progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Meta-train `method` on `benchmark`, run the continual evaluation, write the run folder.

    Every argument is checked before the run folder is touched.
    """
    method, benchmark = METHODS.canonical(method), BENCHMARKS.canonical(benchmark)
    method_args, benchmark_args = dict(method_args or {}), dict(benchmark_args or {})
    start = time.perf_counter()
    gen = seed_everything(seed)
    bench = build_benchmark(benchmark, seed, benchmark_args)
    setup = build_method(method, bench, method_args)
    folder = prepare_run_folder(out, overwrite)
    config = {"method": method, "benchmark": benchmark, "seed": seed,
              "method_args": method_args, "benchmark_args": benchmark_args}
    atomic_write_yaml(folder / "config.yaml", config)
    log = folder / "metrics.jsonl"

    def on_step(step: int, loss: float) -> None:
        append_jsonl(log, {"phase": "train", "step": step, "loss": loss})
        if progress is not None:
            progress(step, loss)

    trained = setup.train(gen, on_step)
    trained_at = time.perf_counter()
    outcomes = {"result": run_stream(trained.learner, bench),
                "baseline": run_stream(trained.baseline, bench)}
    log_streams(log, outcomes)
    end = time.perf_counter()
    results = {
        "schema_version": SCHEMA_VERSION, "name": folder.name, "method": method,
        "benchmark": benchmark, "seed": seed,
        "config": {"method_args": method_args, "benchmark_args": benchmark_args},
        "metric": bench.objective.metric_name, "meta_trained": METHODS.meta(method)["meta_trained"],
        **{key: outcome.to_dict() for key, outcome in outcomes.items()},
        "timings": {"train_seconds": trained_at - start, "evaluation_seconds": end - trained_at,
                    "total_seconds": end - start},
        "versions": versions(),
    }
    atomic_write_json(folder / "results.json", results)
    write_report(folder, results, trained.losses)
    return results
