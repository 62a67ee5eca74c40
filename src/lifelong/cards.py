"""Strategy cards: what the guide and the reports know about a registered strategy, normalised from
its registry metadata (family, what it stores, memory / compute / forgetting in the symbols of 37.13's
comparison table, paper) and its plugin's `needs_task_labels` and `settings` (the scenarios of 37.6 it
runs in, also as built with `infer_task=True` when it can guess the task identity); a missing key is
"unknown", never guessed."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping
from typing import Any

from lifelong.core.registries import STRATEGIES
from lifelong.core.registry import Registry

UNKNOWN = "unknown"

# Words of 37.13's table, from least to most (the order breaks ties in the ranking).
FORGETTING = ("None", "Very Low", "Low", "Moderate", "Severe")
LEVELS = ("Low", "Medium", "High")
# What `stores` says when the strategy keeps raw samples of past experiences.
DATA_STORES = ("buffer", "all data", "samples", "exemplars")
# Factors in a cost symbol that grow with the number of tasks T.
GROWING = ("T", "stream", "classes", "tasks")


def _symbol(text: Any) -> str:
    """A cost as 37.13 writes it: `none` → `None`, `O(T·data)` → `O(T * data)`, `low` → `Low`."""
    if text is None:
        return UNKNOWN
    text = re.sub(r"\s*[·×]\s*", " * ", str(text).strip())
    words = {w.lower(): w for w in (*FORGETTING, *LEVELS)}
    return words.get(text.lower(), text)


def _growth(symbol: str) -> str:
    """How a cost grows with the number of tasks: `O(T)`, `O(1)`, or unknown."""
    if symbol == UNKNOWN:
        return UNKNOWN
    tokens = set(re.findall(r"[A-Za-z_]+", symbol))
    return "O(T)" if tokens & set(GROWING) else "O(1)"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def _plugin_attributes(builder: Any) -> tuple[Any, Any]:
    """(needs_task_labels, settings) of a plugin class, or of what a factory builds with its defaults."""
    target = builder
    if not inspect.isclass(builder):
        try:
            target = builder()
        except Exception:  # a factory that cannot build without arguments: leave it unknown
            return None, None
    return getattr(target, "needs_task_labels", None), getattr(target, "settings", None)


def _settings_inferring(builder: Any) -> list[str] | str:
    """The settings of what `builder(infer_task=True)` builds (task_identity.py: it then guesses the
    task identity, so it may run where none is given), or unknown when that cannot be built."""
    try:
        settings = getattr(builder(infer_task=True), "settings", None)
    except Exception:
        return UNKNOWN
    return UNKNOWN if settings is None else list(settings)


def strategy_card(name: str, registry: Registry = STRATEGIES) -> dict[str, Any]:
    """What the guide and the reports know about a strategy, every missing key as "unknown"."""
    meta = registry.meta(name)
    builder = registry.get(name)
    canonical = registry.canonical(name)
    needs, settings = _plugin_attributes(builder)
    needs = meta.get("needs_task_labels", needs)
    defaults = {p.name: _jsonable(p.default) if p.default is not p.empty else "required"
                for p in inspect.signature(builder).parameters.values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if needs is None:
        task_labels = UNKNOWN
    elif not needs:
        task_labels = "not needed"
    else:  # `infer_task` is the shared switch of parameter-isolation strategies (task_identity.py)
        task_labels = "inferable" if "infer_task" in defaults else "required"
    stores = meta.get("stores", UNKNOWN)
    memory, compute = _symbol(meta.get("memory")), _symbol(meta.get("compute"))
    return {
        "name": canonical,
        "aliases": list(meta.get("aliases", ())),
        "family": meta.get("family", UNKNOWN),
        "stores": stores,
        "stores_data": None if stores == UNKNOWN else stores in DATA_STORES,
        "task_labels": task_labels,
        "settings": list(settings) if settings is not None else UNKNOWN,
        # with infer_task=True (None: the strategy has no such switch)
        "settings_infer_task": _settings_inferring(builder) if task_labels == "inferable" else None,
        "memory": memory,
        "memory_growth": _growth(memory),
        "compute": compute if compute in (*LEVELS, UNKNOWN) else ("High" if _growth(compute) == "O(T)" else UNKNOWN),
        "compute_growth": _growth(compute),
        "forgetting": _symbol(meta.get("forgetting")),
        "capacity": meta.get("capacity", UNKNOWN),
        "paper": meta.get("paper", UNKNOWN),
        "defaults": defaults,
    }


def scenario_of(task_labels: bool) -> str:
    """The scenario of 37.6 the answers imply: `task` with the task identity at test time, else `class`."""
    return "task" if task_labels else "class"


def is_fine_tuning(card: Mapping[str, Any]) -> bool:
    """Whether a card is plain fine-tuning (a baseline storing nothing), the reference of comparisons."""
    return card.get("family") == "baseline" and card.get("stores") == "nothing"


def must_infer_task(card: Mapping[str, Any], task_labels: bool) -> bool:
    """Whether a strategy needs `infer_task=True`: it can guess the task identity, and none is given."""
    return card.get("task_labels") == "inferable" and not task_labels


def supported_settings(card: Mapping[str, Any], task_labels: bool) -> list[str] | str:
    """The scenarios a strategy runs in as the guide runs it: built with `infer_task=True` when
    `must_infer_task`, else with its defaults; unknown when the card does not say."""
    key = "settings_infer_task" if must_infer_task(card, task_labels) else "settings"
    settings = card.get(key)
    return UNKNOWN if settings in (None, UNKNOWN) else list(settings)


def runs_in_scenario(card: Mapping[str, Any], task_labels: bool) -> bool | str:
    """Whether a strategy runs in the scenario the answers imply (`scenario_of`), or unknown."""
    settings = supported_settings(card, task_labels)
    return UNKNOWN if settings == UNKNOWN else scenario_of(task_labels) in settings
