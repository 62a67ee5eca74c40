"""The registries of the library, one per kind of named thing; the provider modules register into them.

Providers are imported on a registry's first lookup, so `STRATEGIES.get("curriculum")` works
without the caller importing `lifelong.curriculum` first.
"""

from __future__ import annotations

from lifelong.core.registry import Registry

STRATEGIES: Registry = Registry("strategy", ("lifelong.continual.plugins", "lifelong.curriculum", "lifelong.meta"))
BACKBONES: Registry = Registry("model", ("lifelong.models",))
HEADS: Registry = Registry("head", ("lifelong.models",))
SOURCES: Registry = Registry("dataset", ("lifelong.data.sources",))
SCENARIOS: Registry = Registry("scenario", ("lifelong.data.scenarios",))
WEIGHTINGS: Registry = Registry("weighting", ("lifelong.multitask.weighting",))
AGGREGATORS: Registry = Registry("aggregator", ("lifelong.grad",))
ARCHITECTURES: Registry = Registry("architecture", ("lifelong.multitask.architectures",))
SCORERS: Registry = Registry("scorer", ("lifelong.curriculum",))
PACINGS: Registry = Registry("pacing", ("lifelong.curriculum",))
LOGGERS: Registry = Registry("logger", ("lifelong.report.loggers",))

ALL: dict[str, Registry] = {
    r.kind: r
    for r in (
        STRATEGIES, BACKBONES, HEADS, SOURCES, SCENARIOS, WEIGHTINGS, AGGREGATORS,
        ARCHITECTURES, SCORERS, PACINGS, LOGGERS,
    )
}
