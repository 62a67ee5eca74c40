"""Hyper-parameter selection without touching the test set: a validation stream and a grid.

`holdout` carves a validation split from each experience's *training* data and returns it as
that experience's test set, so a whole continual run (and its accuracy matrix) can score a
configuration; the chosen configuration is then rerun on the real split.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import torch

from lifelong.core.config import RunConfig, parse_overrides
from lifelong.core.errors import ConfigError, EmptyExperienceError
from lifelong.data.stream import Experience, Stream

RUN_KEYS = frozenset(f.name for f in fields(RunConfig))


def holdout(stream: Stream, fraction: float = 0.2, seed: int = 0) -> Stream:
    """Each experience's training data split at random into train (1 − fraction) and validation.

    The validation part becomes the experience's test set; the real test set is dropped. The
    split of experience i is drawn from a generator seeded with (seed, i).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction {fraction} must lie strictly between 0 and 1, e.g. 0.2")
    experiences = []
    for e in stream:
        n_val = round(e.n_train * fraction)
        if n_val < 1 or n_val >= e.n_train:
            raise EmptyExperienceError(
                f"experience {e.id} has {e.n_train} training samples: too few to hold out "
                f"{fraction:.0%} for validation; use more data or another --val-fraction")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + e.id)
        order = torch.randperm(e.n_train, generator=gen).to(e.train_y.device)
        val, train = order[:n_val], order[n_val:]
        experiences.append(Experience(e.id, e.train_x[train], e.train_y[train], e.train_x[val],
                                      e.train_y[val], e.classes, e.task))
    return Stream(tuple(experiences), stream.setting, stream.n_classes, f"{stream.name}-validation",
                  stream.class_names)


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """`["ewc.ewc_lambda=1,10", "lr=0.01,0.001"]` → {"ewc.ewc_lambda": [1, 10], "lr": [0.01, 0.001]}.

    Values are comma-separated YAML scalars (a bracketed list is one value).
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise ConfigError(f"grid entry {item!r} is not key=v1,v2 (e.g. ewc.ewc_lambda=1,10,100)")
        parts = re.split(r",(?![^\[]*\])", raw)
        grid[key] = [parse_overrides([f"v={part}"])["v"] for part in parts]
    return grid


def grid_points(names: Sequence[str], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The grid's points that concern a strategy made of `names`, as override dicts.

    A key is either a RunConfig field (`lr`), shared by every strategy, or `<strategy>.<argument>`
    for one of `names`. Keys of other strategies are ignored here.
    """
    keys = [k for k in grid if k in RUN_KEYS or k.partition(".")[0] in names]
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def check_grid_keys(grid: Mapping[str, Any], strategies: Sequence[Sequence[str]]) -> None:
    """Refuse grid keys that neither name a RunConfig field nor a compared strategy."""
    known = {n for names in strategies for n in names}
    stray = sorted(k for k in grid if k not in RUN_KEYS and k.partition(".")[0] not in known)
    if stray:
        raise ConfigError(f"grid keys {stray} name neither a run setting ({', '.join(sorted(RUN_KEYS))}) "
                          f"nor a compared strategy ({', '.join(sorted(known))}); write <strategy>.<argument>")


def point_tag(point: Mapping[str, Any]) -> str:
    """A folder-safe tag for a grid point, e.g. `ewc_lambda=10,lr=0.01`."""
    text = ",".join(f"{k.partition('.')[2] or k}={v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9_.=+,-]", "_", text)


def best_point(scores: Sequence[Sequence[float]]) -> int:
    """Index of the point whose mean validation score is highest (the first on ties)."""
    means = [sum(s) / len(s) for s in scores]
    return max(range(len(means)), key=lambda i: (means[i], -i))
