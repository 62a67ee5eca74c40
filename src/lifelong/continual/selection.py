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

from lifelong.core.config import RunConfig, parse_value
from lifelong.core.errors import ConfigError, EmptyExperienceError
from lifelong.core.registries import STRATEGIES
from lifelong.data.stream import Experience, Stream

RUN_KEYS = frozenset(f.name for f in fields(RunConfig))
# Run settings `compare` sets itself for every run, and how to set them instead.
SET_BY_COMPARE = {"seed": "--seeds", "out": "--out", "name": "--out (runs are named <strategy>-s<seed>)",
                  "strategy": "--strategies", "strategy_args": "<strategy>.<argument>=value"}
SETTINGS = ", ".join(sorted(RUN_KEYS - SET_BY_COMPARE.keys()))  # what overrides and grid keys may set


def check_fraction(fraction: float) -> None:
    """Refuse a validation fraction outside (0, 1)."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction {fraction} must lie strictly between 0 and 1, e.g. 0.2")


def holdout(stream: Stream, fraction: float = 0.2, seed: int = 0) -> Stream:
    """Each experience's training data split at random into train (1 − fraction) and validation.

    The validation part becomes the experience's test set; the real test set is dropped. The
    split of experience i is drawn from a generator seeded with (seed, i).
    """
    check_fraction(fraction)
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


def strategy_of_key(key: str) -> str | None:
    """None for a run setting (`lr`, `model_args.hidden`), else the strategy (canonical) of `<strategy>.<argument>`.

    The one classifier of the keys `lifelong compare` takes as overrides and grid keys.
    """
    head, _, argument = key.partition(".")
    if head in SET_BY_COMPARE:
        raise ConfigError(f"{key!r}: compare sets {head} itself for every run; use {SET_BY_COMPARE[head]} instead")
    if head in RUN_KEYS:
        return None
    if not argument:
        raise ConfigError(f"{key!r} names neither a run setting ({SETTINGS}) nor <strategy>.<argument> "
                          "(e.g. ewc.ewc_lambda=100)")
    return STRATEGIES.canonical(head)


def canonical_key(key: str) -> str:
    """`<alias>.<argument>` renamed to `<canonical>.<argument>`; run settings unchanged."""
    strategy = strategy_of_key(key)
    return key if strategy is None else f"{strategy}.{key.partition('.')[2]}"


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """`["ewc.ewc_lambda=1,10", "lr=0.01,0.001"]` → {"ewc.ewc_lambda": [1, 10], "lr": [0.01, 0.001]}.

    Values are read as the items of one YAML flow list: a bracketed list or braced mapping is one value.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise ConfigError(f"grid entry {item!r} is not key=v1,v2 (e.g. ewc.ewc_lambda=1,10,100)")
        if key in grid:
            raise ConfigError(f"grid key {key!r} is given twice; give all its values in one entry, e.g. {key}=v1,v2")
        grid[key] = parse_value(f"[{raw}]", f"grid entry {item!r}")
    return grid


def canonical_grid(grid: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """The grid under canonical keys; refuses two keys naming one setting, and keys without values."""
    given: dict[str, str] = {}
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        name = canonical_key(key)
        if name in out:
            raise ConfigError(f"grid keys {given[name]!r} and {key!r} both set {name!r}; give its values once")
        if not values:
            raise ConfigError(f"grid key {key!r} has no values; give at least one, e.g. {key}=v1,v2")
        given[name], out[name] = key, list(values)
    return out


def grid_points(names: Sequence[str], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The grid's points that concern a strategy made of `names`, as override dicts.

    A key is either a run setting (`lr`, `model_args.hidden`), shared by every strategy, or
    `<strategy>.<argument>` for one of `names`. Keys of other strategies are ignored here.
    """
    keys = [k for k in grid if strategy_of_key(k) in (None, *names)]
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def check_grid_keys(grid: Mapping[str, Any], strategies: Sequence[Sequence[str]]) -> None:
    """Refuse grid keys that neither name a run setting nor an argument of a compared strategy."""
    known = {n for names in strategies for n in names}
    stray = sorted(k for k in grid if strategy_of_key(k) not in (None, *known))
    if stray:
        raise ConfigError(f"grid keys {stray} name neither a run setting ({SETTINGS}) "
                          f"nor a compared strategy ({', '.join(sorted(known))}); write <strategy>.<argument>")


def point_tag(point: Mapping[str, Any]) -> str:
    """A folder-safe tag for a grid point, e.g. `ewc_lambda=10,lr=0.01`."""
    text = ",".join(f"{k.partition('.')[2] or k}={v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9_.=+,-]", "_", text)


def best_point(scores: Sequence[Sequence[float]]) -> int:
    """Index of the point whose mean validation score is highest (the first on ties)."""
    means = [sum(s) / len(s) for s in scores]
    return max(range(len(means)), key=lambda i: (means[i], -i))
