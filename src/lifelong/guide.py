"""The selection guide (seed 37.13): a user's constraints → registered strategies ranked, with reasons.

Every strategy is described by a *card* normalised from its registry metadata (family, what it
stores, memory / compute / forgetting in the symbols of 37.13's comparison table, paper) and its
plugin's `needs_task_labels` and `settings` (the scenarios of 37.6 it runs in, also as built with
`infer_task=True` when it can guess the task identity). The chapter's "when to use" rules and five
practical scenarios are data (`RULES`): each rule matches some answers and some card fields (plus
`runs_in_scenario`, whether the card's settings hold the scenario the answers imply) and adds a score
with its reason. A strategy whose card lacks a key is matched as "unknown", never guessed.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lifelong.core.errors import ConfigError
from lifelong.core.registries import STRATEGIES
from lifelong.core.registry import Registry

UNKNOWN = "unknown"
EXCLUDE = float("-inf")

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


@dataclass(frozen=True)
class Answers:
    """The user's constraints: the questions of 37.13's selection guide."""

    tasks: int = 10
    storage: bool = True
    zero_forgetting: bool = False
    task_labels: bool = False
    pretrained: bool = False
    memory: str = "medium"
    compute: str = "medium"
    fixed_architecture: bool = False
    tasks_known: bool = True

    def facts(self) -> dict[str, Any]:
        """The answers plus the task-count classes the chapter's scenarios name and the scenario they imply."""
        return {**asdict(self), "few_tasks": self.tasks < 5, "many_tasks": self.tasks > 20,
                "scenario": scenario_of(self.task_labels)}


def scenario_of(task_labels: bool) -> str:
    """The scenario of 37.6 the answers imply: `task` with the task identity at test time, else `class`."""
    return "task" if task_labels else "class"


@dataclass(frozen=True)
class Rule:
    """When the answers match `when` and the card matches `card`, add `score` (EXCLUDE drops it).

    A matcher maps a key to a value or a tuple of accepted values.
    """

    when: Mapping[str, Any]
    card: Mapping[str, Any]
    score: float
    reason: str
    source: str = "37.13"


ARCH = "architecture"
REG = "regularisation"
RULES: tuple[Rule, ...] = (
    # Scenario 3: privacy, no data storage.
    Rule({"storage": False}, {"stores_data": True}, EXCLUDE,
         "keeps old samples ({stores}), and old data may not be stored", "37.13 scenario 3"),
    Rule({"storage": False}, {"stores_data": None}, -2,
         "does not declare what it stores; check it keeps no old data", "37.13 scenario 3"),
    Rule({"storage": False}, {"family": REG}, 4,
         "needs no old data: it regularises the model alone (LwF, EWC, SI)", "37.13 scenario 3"),
    Rule({"storage": False}, {"stores": "generator"}, 1,
         "replays from a generator instead of stored data, if you can afford training it",
         "37.13 scenario 3"),
    # Replay when a buffer may be kept; scenario 1: few tasks.
    Rule({"storage": True}, {"family": "replay"}, 3,
         "a small buffer may be kept, and replay is often the strongest simple method",
         "37.13 when to use replay"),
    Rule({"storage": True, "few_tasks": True}, {"family": "replay", "compute": "Low"}, 1,
         "few tasks: start with simple, cheap replay", "37.13 scenario 1"),
    Rule({"few_tasks": True}, {"family": REG}, 1,
         "few tasks: a regularisation term complements a small buffer", "37.13 scenario 1"),
    # Scenario 2: many tasks.
    Rule({"many_tasks": True}, {"memory_growth": "O(T)"}, -3,
         "its memory ({memory}) grows with each of the {tasks} tasks", "37.13 scenario 2"),
    Rule({"many_tasks": True}, {"compute": "High"}, -1,
         "High compute cost, paid over {tasks} tasks", "37.13 scenario 2"),
    Rule({"many_tasks": True}, {"capacity": "bounded"}, -2,
         "shares one fixed network out among the tasks, so {tasks} tasks may exhaust it",
         "37.13 comparison table (scalability Medium)"),
    Rule({"tasks_known": False}, {"capacity": "bounded"}, -1,
         "shares one fixed network out among the tasks: without their number its capacity cannot be planned",
         "37.13 when to use architecture methods"),
    # A model that must stay one network without architectural changes.
    Rule({"fixed_architecture": True}, {"family": ARCH}, EXCLUDE,
         "changes the model's architecture (adds, masks or routes parameters), which must stay fixed",
         "37.13 when to use regularisation / LwF"),
    Rule({"many_tasks": True, "storage": True}, {"family": "replay", "memory_growth": "O(1)"}, 1,
         "a fixed-size memory scales to many tasks (A-GEM, DER++)", "37.13 scenario 2"),
    Rule({"many_tasks": True}, {"family": REG, "memory_growth": "O(1)"}, 1,
         "constant memory over many tasks (online EWC accumulates one Fisher)", "37.13 scenario 2"),
    Rule({"many_tasks": True}, {"family": REG}, -1,
         "regularisation loses accuracy as tasks accumulate", "37.13 when to use regularisation"),
    # Scenario 4: zero forgetting.
    Rule({"zero_forgetting": True}, {"forgetting": "None"}, 5,
         "no forgetting by construction: old tasks' parameters are frozen or isolated",
         "37.13 scenario 4"),
    Rule({"zero_forgetting": True}, {"family": ARCH}, 2,
         "isolates each task's parameters", "37.13 when to use architecture methods"),
    Rule({"zero_forgetting": True}, {"forgetting": "Very Low"}, 1,
         "forgetting is Very Low, though not zero", "37.13 scenario 4"),
    Rule({"zero_forgetting": True}, {"forgetting": ("Low", "Moderate", "Severe", UNKNOWN)}, -3,
         "forgetting is {forgetting}, and zero forgetting is required", "37.13 scenario 4"),
    Rule({"zero_forgetting": True}, {"family": "replay"}, -2,
         "replay lowers forgetting but cannot rule it out", "37.13 scenario 4"),
    # Task identity at test time.
    Rule({"task_labels": False}, {"task_labels": "required"}, EXCLUDE,
         "needs the task identity at test time, which you do not have", "37.6 scenarios"),
    Rule({"task_labels": False}, {"task_labels": "inferable"}, -2,
         "needs the task identity at test time; infer_task=True guesses it, less accurately",
         "37.13 when to use architecture methods"),
    Rule({"task_labels": True}, {"task_labels": ("required", "inferable")}, 1,
         "uses the task identity you have at test time", "37.13 when to use architecture methods"),
    Rule({}, {"runs_in_scenario": False}, EXCLUDE,
         "runs in the {supported} scenarios only, not in the {scenario} scenario your answers imply",
         "37.6 scenarios"),
    # Scenario 5: a pre-trained foundation model.
    Rule({"pretrained": True}, {"stores": ("adapters", "prompts")}, 6,
         "small per-task modules on a frozen pre-trained backbone (adapters, LoRA, prompts)",
         "37.13 scenario 5"),
    Rule({"pretrained": False}, {"stores": ("adapters", "prompts")}, -1,
         "made for a pre-trained backbone; from scratch the backbone learns the first task only",
         "37.13 scenario 5"),
    # Budgets.
    Rule({"memory": "low"}, {"memory_growth": "O(T)"}, -2,
         "memory ({memory}) grows with tasks on a low memory budget", "37.13 comparison table"),
    Rule({"memory": "low"}, {"stores_data": True}, -1,
         "keeps samples on a low memory budget", "37.13 comparison table"),
    Rule({"compute": "low"}, {"compute": "High"}, -3,
         "High compute cost on a low compute budget", "37.13 comparison table"),
    Rule({"compute": "low"}, {"compute": "Medium"}, -1,
         "Medium compute cost on a low compute budget", "37.13 comparison table"),
    Rule({"compute": "medium"}, {"compute": "High"}, -1,
         "High compute cost", "37.13 comparison table"),
    # Always.
    Rule({}, {"forgetting": ("None", "Very Low")}, 1,
         "forgetting is {forgetting} in the chapter's table", "37.13 comparison table"),
    Rule({}, {"forgetting": "Severe"}, -1,
         "forgetting is Severe", "37.13 comparison table"),
    Rule({}, {"family": "baseline"}, -4,
         "a baseline: run it in `lifelong compare` as the reference point", "37.13 comparison table"),
    Rule({}, {"family": "curriculum"}, -2,
         "orders data from easy to hard but does not by itself prevent forgetting; "
         "combine it (e.g. curriculum+replay)", "37.11"),
)


def _matches(matcher: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    for key, expected in matcher.items():
        accepted = expected if isinstance(expected, tuple) else (expected,)
        if values.get(key, UNKNOWN) not in accepted:
            return False
    return True


@dataclass
class Advice:
    """One ranked strategy: its score, whether a constraint excludes it, and every reason."""

    name: str
    score: float
    excluded: bool
    reasons: list[str] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)


def judge(card: Mapping[str, Any], answers: Answers, rules: Sequence[Rule] = RULES) -> Advice:
    """Apply every matching rule to one card (seen with `runs_in_scenario` and `supported` for these answers)."""
    facts = answers.facts()
    settings = supported_settings(card, answers.task_labels)
    seen = {**card, "runs_in_scenario": runs_in_scenario(card, answers.task_labels),
            "supported": settings if settings == UNKNOWN else " / ".join(settings)}
    advice = Advice(card["name"], 0.0, False, card=dict(card))
    for rule in rules:
        if not (_matches(rule.when, facts) and _matches(rule.card, seen)):
            continue
        text = rule.reason.format(**{**facts, **seen})
        if rule.score == EXCLUDE:
            advice.excluded = True
            advice.reasons.insert(0, f"excluded: {text} ({rule.source})")
        else:
            advice.score += rule.score
            advice.reasons.append(f"{rule.score:+g}: {text} ({rule.source})")
    return advice


def _rank_key(a: Advice) -> tuple:
    forgetting = a.card["forgetting"]
    compute = a.card["compute"]
    return (a.excluded, -a.score,
            FORGETTING.index(forgetting) if forgetting in FORGETTING else len(FORGETTING),
            LEVELS.index(compute) if compute in LEVELS else len(LEVELS), a.name)


def advise(answers: Answers, registry: Registry = STRATEGIES, rules: Sequence[Rule] = RULES) -> list[Advice]:
    """Every registered strategy ranked for `answers`, best first; excluded ones last."""
    return sorted((judge(strategy_card(n, registry), answers, rules) for n in registry.names()),
                  key=_rank_key)


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


def compare_command(ranked: Sequence[Advice], answers: Answers, top: int = 3,
                    benchmark: str = "split-digits", seeds: int = 3) -> str:
    """The `lifelong compare` command line that measures the top candidates beside the naive baseline."""
    if top < 1:
        raise ConfigError(f"--top {top}: compare at least one candidate, e.g. --top 3")
    # a strategy whose card rules out the scenario never enters the command, whatever rules ranked it
    runnable = [a for a in ranked if runs_in_scenario(a.card, answers.task_labels) is not False]
    chosen = [a for a in runnable if not a.excluded and a.card["family"] != "baseline"][:top]
    names = [a.name for a in chosen]
    baselines = [a.name for a in runnable if is_fine_tuning(a.card)]
    scenario = scenario_of(answers.task_labels)
    overrides = [f"{a.name}.infer_task=true" for a in chosen if must_infer_task(a.card, answers.task_labels)]
    return " ".join(["lifelong compare", "--benchmark", benchmark, "--scenario", scenario,
                     "--strategies", ",".join(names + baselines[:1]), "--seeds", str(seeds), *overrides])
