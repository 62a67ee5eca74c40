"""`lifelong compare`: strategies × seeds (× an optional grid) run in worker processes, resumably.

Layout under `out/`: `runs/<label>-s<seed>/` (the runs on the real split), `selection/<label>/
<point>-val<fraction>-s<seed>/` (grid points scored on a validation split carved from the training
data; see selection.py; a strategy's point is chosen once every point finished every seed), and
`compare.json`, the manifest: what was asked, what was chosen and which run folders belong to which
strategy. A run folder holding `results.json` and `measures.json` is
finished and never redone; an interrupted one resumes from its checkpoint.

Each run executes in its own process (forkserver, else spawn; one torch thread), so its peak
memory is its own. `measures.json` adds what the strategy stores: the bytes of the tensors in its
plugins' checkpointed state, plus the training data it keeps when it keeps every sample.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from lifelong.continual.run import CHECKPOINT, build_engine, build_stream, run, training_options
from lifelong.continual.selection import (
    best_point,
    canonical_grid,
    check_fraction,
    check_grid_keys,
    grid_points,
    holdout,
    point_tag,
    strategy_of_key,
)
from lifelong.continual.strategies import args_by_strategy, split_spec
from lifelong.core.allocator import keep_freed_memory
from lifelong.core.checkpoint import load_checkpoint
from lifelong.core.config import RunConfig, merge, nest
from lifelong.core.errors import ConfigError, RunExistsError
from lifelong.core.records import atomic_write_json, read_json
from lifelong.core.registries import STRATEGIES
from lifelong.data.stream import Stream

SCHEMA_VERSION = 1
MANIFEST = "compare.json"
MEASURES = "measures.json"
KEEPS_STREAM = "all data"  # a strategy's `stores` when it keeps every training sample it has seen


def tensor_bytes(value: Any) -> int:
    """Total bytes of the tensors in a nested structure of dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(v) for v in value)
    return 0


def measure(folder: str | Path, stream: Stream | None = None) -> dict[str, Any]:
    """What a finished run's strategy stores, in bytes: its plugin states and any data it keeps.

    `stream` is rebuilt from the run's config when the strategy keeps every sample and none is given.
    """
    folder = Path(folder)
    state, saved = load_checkpoint(folder / CHECKPOINT)
    config = RunConfig.from_dict(saved)
    plugin_bytes = tensor_bytes(state["plugins"])
    data_bytes = 0
    if any(STRATEGIES.meta(n).get("stores") == KEEPS_STREAM for n in split_spec(config.strategy)):
        stream = stream if stream is not None else build_stream(config)
        data_bytes = sum(tensor_bytes([e.train_x, e.train_y]) for e in stream)
    return {"stored_bytes": plugin_bytes + data_bytes, "plugin_state_bytes": plugin_bytes,
            "data_bytes": data_bytes}


def _init_worker() -> None:
    """Each worker: one torch thread (runs in parallel would otherwise oversubscribe the cores), and
    freed memory kept for reuse as by the `lifelong` command."""
    torch.set_num_threads(1)
    keep_freed_memory()


def execute(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job in this process (a worker): train, then write measures.json beside results.json."""
    for module in job["modules"]:
        importlib.import_module(module)
    config = RunConfig.from_dict(job["config"])
    stream = build_stream(config)
    if job["holdout"]:
        stream = holdout(stream, job["holdout"], config.seed)
    results = run(config, resume=True, stream=stream)
    folder = config.folder()
    split = "validation" if job["holdout"] else "test"
    atomic_write_json(folder / MEASURES, {**measure(folder, stream), "split": split})
    return {"folder": str(folder), "acc": results["metrics"]["acc"]}


def _folder(job: Mapping[str, Any]) -> Path:
    """The run folder of a job."""
    return RunConfig.from_dict(job["config"]).folder()


def _finished(job: Mapping[str, Any]) -> bool:
    """Whether the job's folder holds a finished run of the same configuration."""
    folder = _folder(job)
    if not ((folder / "results.json").exists() and (folder / MEASURES).exists()):
        return False
    saved = RunConfig.from_dict(read_json(folder / "results.json")["config"])
    differing = RunConfig.from_dict(job["config"]).diff(saved)
    if differing:
        raise RunExistsError(f"{folder} holds a finished run of another configuration (differing keys: "
                             f"{differing}); compare into another --out, or delete that folder")
    return True


def pool(jobs: int, modules: Sequence[str] = ()) -> ProcessPoolExecutor:
    """Worker processes, each run in a fresh one (its peak memory is its own), one torch thread each.

    With forkserver, `modules` (and torch._dynamo, which optimisers import on first use, ~2 s) are
    imported once in the server, so each run starts without imports.
    """
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["torch._dynamo", "lifelong.continual.compare", *modules])
    fresh = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker, **fresh)


def execute_all(work: Sequence[dict[str, Any]], jobs: int,
                on_run: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the unfinished jobs in `jobs` processes; return the failures (folder and error)."""
    todo = [j for j in work if not _finished(j)]
    for job in work:
        if job not in todo and on_run:
            on_run({"folder": str(_folder(job)), "label": job["label"], "skipped": True})
    failures: list[dict[str, Any]] = []
    if not todo:
        return failures
    with pool(min(jobs, len(todo)), todo[0]["modules"]) as executor:
        futures = {executor.submit(execute, job): job for job in todo}
        for future in as_completed(futures):
            job = futures[future]
            record = {"folder": str(_folder(job)), "label": job["label"]}
            try:
                future.result()
            except Exception as exc:  # keep the other runs going; report every failure at the end
                record["error"] = f"{type(exc).__name__}: {exc}"
                failures.append(record)
            if on_run:
                on_run(record)
    return failures


def _config(base: RunConfig, spec: str, args: Mapping[str, Mapping[str, Any]], point: Mapping[str, Any],
            seed: int, out: Path, name: str) -> RunConfig:
    """The config of one run: `base`, the strategy `spec` with its arguments, a grid point, seed and folder."""
    groups: dict[str, Any] = {n: dict(args.get(n, {})) for n in split_spec(spec)}
    values = base.to_dict()
    for key, value in point.items():
        if strategy_of_key(key) is None:
            values = merge(values, nest(key, value))
        else:
            groups = merge(groups, nest(key, value))
    values.update(strategy=spec, strategy_args={n: a for n, a in groups.items() if a}, seed=seed,
                  out=str(out), name=name)
    return RunConfig.from_dict(values)


def _selection(per_point: Sequence[Sequence[Mapping[str, Any]]], points: Sequence[Mapping[str, Any]],
               n_seeds: int, out: Path) -> dict[str, Any] | None:
    """Validation scores of each grid point and the best one's index; None until every point has finished
    every seed (a failed point might be the best one, so nothing is chosen from a partial grid)."""
    table = []
    for point, jobs in zip(points, per_point, strict=True):
        done = [_folder(j) for j in jobs if (_folder(j) / "results.json").exists()]
        scores = [read_json(f / "results.json")["metrics"]["acc"] for f in done]
        table.append({"point": point, "runs": [str(f.relative_to(out)) for f in done], "val_acc": scores})
    if any(len(row["val_acc"]) != n_seeds for row in table):
        return None
    return {"points": table, "chosen": best_point([row["val_acc"] for row in table])}


def _check_request(labels: Sequence[str], seeds: Sequence[int], jobs: int, val_fraction: float) -> None:
    """Refuse repeated strategies or seeds, no worker, and a validation fraction outside (0, 1)."""
    if len(set(labels)) != len(labels) or not labels:
        raise ConfigError(f"strategies {list(labels)} (canonical names): give at least one, each once")
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"seeds {list(seeds)}: give at least one, each once (each seed has one run folder), "
                          "e.g. --seeds 0,1,2")
    if jobs < 1:
        raise ConfigError(f"jobs {jobs}: give at least one worker process, e.g. --jobs 2")
    check_fraction(val_fraction)


def compare(strategies: Sequence[str], base: RunConfig, *, seeds: Sequence[int], out: str | Path,
            jobs: int = 1, grid: Mapping[str, Sequence[Any]] | None = None,
            strategy_args: Mapping[str, Mapping[str, Any]] | None = None, val_fraction: float = 0.2,
            on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every strategy over `seeds` (grid points chosen on validation first); write compare.json.

    `strategy_args` maps a strategy name to its arguments, shared by every combination using it.
    Returns the manifest; its `failures` lists runs that raised (the others still finish).
    Workers start as multiprocessing does: a script calling this needs `if __name__ == "__main__":`.
    """
    out, seeds = Path(out), list(seeds)
    labels = ["+".join(split_spec(s)) for s in strategies]
    _check_request(labels, seeds, jobs, val_fraction)
    args = {k: dict(v) for k, v in args_by_strategy(strategy_args or {}, "compare").items()}
    grid = canonical_grid(grid or {})
    check_grid_keys(grid, [split_spec(s) for s in labels])
    stray = sorted(set(args) - {n for s in labels for n in split_spec(s)})
    if stray:
        raise ConfigError(f"arguments given for {stray}, which are not compared; compared: {', '.join(labels)}")
    stream = build_stream(base)
    points = {label: grid_points(split_spec(label), grid) for label in labels}
    for label, pts in points.items():
        for point in pts:  # every point's model, strategy and settings are checked before any run
            config = _config(base, label, args, point, seeds[0], out, label)
            build_engine(config, stream, **training_options(config))
    modules = sorted({STRATEGIES.get(n).__module__ for s in labels for n in split_spec(s)})

    def job(label: str, point: Mapping[str, Any], seed: int, folder: Path, name: str,
            fraction: float | None) -> dict[str, Any]:
        config = _config(base, label, args, point, seed, folder, name)
        return {"label": label, "config": config.to_dict(), "holdout": fraction, "modules": modules}

    # the validation fraction names the folders: another fraction is another split, never a finished run's
    selection_jobs = {label: [[job(label, p, s, out / "selection" / label, f"{point_tag(p)}-val{val_fraction:g}-s{s}",
                                   val_fraction)
                               for s in seeds] for p in pts] for label, pts in points.items() if len(pts) > 1}
    chosen = {label: pts[0] for label, pts in points.items() if len(pts) <= 1}
    final = [job(label, chosen[label], s, out / "runs", f"{label}-s{s}", None) for label in chosen for s in seeds]
    failures = execute_all([j for per_point in selection_jobs.values() for js in per_point for j in js] + final,
                           jobs, on_run)
    selection = {label: table for label, per_point in selection_jobs.items()
                 if (table := _selection(per_point, points[label], len(seeds), out)) is not None}
    chosen.update({label: points[label][table["chosen"]] for label, table in selection.items()})
    second = [job(label, chosen[label], s, out / "runs", f"{label}-s{s}", None)
              for label in selection for s in seeds]
    failures += execute_all(second, jobs, on_run)
    runs = {label: [str(_folder(j).relative_to(out)) for j in final + second
                    if j["label"] == label and (_folder(j) / "results.json").exists()] for label in labels}
    manifest = {
        "schema_version": SCHEMA_VERSION, "base": base.to_dict(), "strategies": labels,
        "seeds": seeds, "grid": grid, "val_fraction": val_fraction, "strategy_args": args,
        "chosen": {label: chosen.get(label) for label in labels}, "selection": selection, "runs": runs,
        "failures": [{**f, "folder": str(Path(f["folder"]).relative_to(out))} for f in failures],
    }
    atomic_write_json(out / MANIFEST, manifest)
    return manifest
