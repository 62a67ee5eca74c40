"""The selection guide (seed 37.13): a user's constraints → registered strategies ranked, with reasons.

Every strategy is described by a *card* (`lifelong.cards`: registry metadata, its plugin's
`needs_task_labels` and `settings`). The chapter's "when to use" rules and five
practical scenarios are data (`RULES`): each rule matches some answers and some card fields (plus
`runs_in_scenario`, whether the card's settings hold the scenario the answers imply) and adds a score
with its reason. A strategy whose card lacks a key is matched as "unknown", never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lifelong.cards import (
    FORGETTING,
    LEVELS,
    UNKNOWN,
    is_fine_tuning,
    must_infer_task,
    runs_in_scenario,
    scenario_of,
    strategy_card,
    supported_settings,
)
from lifelong.core.errors import ConfigError
from lifelong.core.registries import STRATEGIES
from lifelong.core.registry import Registry

EXCLUDE = float("-inf")  # a rule score that drops the strategy


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
