"""The registries of the library, one per kind of named thing; modules register into them."""

from __future__ import annotations

from lifelong.core.registry import Registry

STRATEGIES: Registry = Registry("strategy")
BACKBONES: Registry = Registry("model")
HEADS: Registry = Registry("head")
SOURCES: Registry = Registry("dataset")
SCENARIOS: Registry = Registry("scenario")
WEIGHTINGS: Registry = Registry("weighting")
AGGREGATORS: Registry = Registry("aggregator")
ARCHITECTURES: Registry = Registry("architecture")
SCORERS: Registry = Registry("scorer")
PACINGS: Registry = Registry("pacing")
LOGGERS: Registry = Registry("logger")

ALL: dict[str, Registry] = {
    r.kind: r
    for r in (
        STRATEGIES, BACKBONES, HEADS, SOURCES, SCENARIOS, WEIGHTINGS, AGGREGATORS,
        ARCHITECTURES, SCORERS, PACINGS, LOGGERS,
    )
}
