"""The selection guide: cards normalised from registry metadata, rules as data, 37.13's five scenarios."""

from __future__ import annotations

import functools
import itertools

import pytest

from lifelong import guide
from lifelong.cards import is_fine_tuning, must_infer_task, runs_in_scenario, strategy_card
from lifelong.continual.plugin import Plugin
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError
from lifelong.core.registries import STRATEGIES
from lifelong.core.registry import Registry
from lifelong.guide import EXCLUDE, Answers, Rule, advise, compare_command, judge

# 37.13's comparison table (plus the methods its scenarios name), as strategies would register it.
CHAPTER = {
    "naive": dict(family="baseline", stores="nothing", memory="none", compute="low", forgetting="Severe"),
    "ewc": dict(family="regularisation", stores="parameters", memory="O(T * params)", compute="Medium",
                forgetting="Moderate"),
    "online_ewc": dict(family="regularisation", stores="parameters", memory="O(params)", compute="Medium",
                       forgetting="Moderate"),
    "si": dict(family="regularisation", stores="parameters", memory="O(params)", compute="Low",
               forgetting="Moderate"),
    "mas": dict(family="regularisation", stores="parameters", memory="O(params)", compute="Medium",
                forgetting="Moderate"),
    "lwf": dict(family="regularisation", stores="parameters", memory="None", compute="Medium",
                forgetting="Moderate"),
    "replay": dict(family="replay", stores="buffer", memory="O(buffer)", compute="Low", forgetting="Low"),
    "der++": dict(family="replay", stores="buffer", memory="O(buffer)", compute="Low", forgetting="Very Low"),
    "gem": dict(family="replay", stores="buffer", memory="O(buffer)", compute="High", forgetting="Low"),
    "agem": dict(family="replay", stores="buffer", memory="O(buffer)", compute="Medium", forgetting="Moderate"),
    "generative": dict(family="replay", stores="generator", memory="O(params)", compute="High",
                       forgetting="Moderate"),
    "cumulative": dict(family="baseline", stores="all data", memory="O(stream)", compute="O(T·data)"),
}
ISOLATING = {  # architecture methods: task labels at test time; all but progressive can infer them
    "progressive": dict(family="architecture", stores="columns", memory="O(T * params)", compute="High",
                        forgetting="None"),
    "packnet": dict(family="architecture", stores="masks", memory="O(masks)", compute="Medium", forgetting="None",
                    capacity="bounded"),
    "hat": dict(family="architecture", stores="masks", memory="O(masks)", compute="Medium",
                forgetting="Very Low", capacity="bounded"),
    "adapters": dict(family="architecture", stores="adapters", memory="O(T * adapter)", compute="Low",
                     forgetting="None"),
}


def _plugin(strategy: str, needs: bool, infer: bool):
    if infer:
        class Isolating(Plugin):
            name, needs_task_labels = strategy, needs

            def __init__(self, width: int = 8, infer_task: bool = False) -> None:
                self.width, self.infer_task = width, infer_task
        return Isolating

    class Shared(Plugin):
        name, needs_task_labels = strategy, needs

        def __init__(self, strength: float = 1.0) -> None:
            self.strength = strength
    return Shared


@pytest.fixture
def chapter() -> Registry:
    """A fresh registry holding the chapter's methods with realistic metadata, and one with none."""
    registry = Registry("strategy")
    for name, meta in CHAPTER.items():
        registry.register(name, **meta)(_plugin(name, False, False))
    for name, meta in ISOLATING.items():
        registry.register(name, **meta)(_plugin(name, True, name != "progressive"))
    registry.register("mystery")(_plugin("mystery", False, False))
    return registry


def _names(ranked, family=None):
    return [a.name for a in ranked if family is None or a.card["family"] == family]


def test_card_normalises_the_chapter_symbols(chapter):
    naive = strategy_card("naive", chapter)
    assert (naive["memory"], naive["compute"], naive["memory_growth"]) == ("None", "Low", "O(1)")
    cumulative = strategy_card("cumulative", chapter)
    assert cumulative["compute"] == "High" and cumulative["compute_growth"] == "O(T)"
    assert cumulative["memory_growth"] == "O(T)" and cumulative["stores_data"] is True
    ewc = strategy_card("ewc", chapter)
    assert ewc["memory_growth"] == "O(T)" and ewc["stores_data"] is False
    assert ewc["task_labels"] == "not needed" and ewc["defaults"] == {"strength": 1.0}
    assert strategy_card("packnet", chapter)["task_labels"] == "inferable"
    assert strategy_card("progressive", chapter)["task_labels"] == "required"
    assert strategy_card("replay", chapter)["memory_growth"] == "O(1)"


def test_card_of_a_strategy_without_metadata_is_unknown_not_guessed(chapter):
    card = strategy_card("mystery", chapter)
    for key in ("family", "stores", "memory", "memory_growth", "compute", "forgetting", "paper"):
        assert card[key] == "unknown", key
    assert card["stores_data"] is None and card["task_labels"] == "not needed"
    ranked = advise(Answers(storage=False), chapter)
    mystery = next(a for a in ranked if a.name == "mystery")
    assert not mystery.excluded and any("does not declare" in r for r in mystery.reasons)


def test_card_reads_task_labels_from_what_a_factory_builds():
    registry = Registry("strategy")

    def factory(rank: int = 4) -> Plugin:
        return _plugin("lora", True, False)()

    def needs_arguments(size: int) -> Plugin:
        return _plugin("x", False, False)()

    registry.register("lora", family="architecture")(factory)
    registry.register("x")(needs_arguments)
    assert strategy_card("lora", registry)["task_labels"] == "required"
    card = strategy_card("x", registry)
    assert card["task_labels"] == "unknown" and card["defaults"] == {"size": "required"}


def test_rules_add_scores_exclude_and_explain():
    card = {"name": "m", "family": "replay", "stores": "buffer", "compute": "High", "forgetting": "Low"}
    rules = (Rule({"storage": True}, {"family": "replay"}, 3, "keeps a {stores}", "s1"),
             Rule({}, {"compute": ("Medium", "High")}, -1, "compute {compute}", "s2"),
             Rule({"storage": False}, {"family": "replay"}, EXCLUDE, "no storage", "s3"),
             Rule({"many_tasks": True}, {}, 5, "never here", "s4"))
    kept = judge(card, Answers(storage=True, tasks=3), rules)
    assert kept.score == 2 and not kept.excluded
    assert kept.reasons == ["+3: keeps a buffer (s1)", "-1: compute High (s2)"]
    dropped = judge(card, Answers(storage=False, tasks=3), rules)
    assert dropped.excluded and dropped.reasons[0] == "excluded: no storage (s3)" and dropped.score == -1


def test_privacy_with_many_tasks_ranks_regularisation_and_lwf_first(chapter):
    """`advise --tasks 50 --no-storage`, the chapter's scenario 3."""
    ranked = advise(Answers(tasks=50, storage=False), chapter)
    regularisation = _names(ranked, "regularisation")
    assert _names(ranked)[: len(regularisation)] == regularisation and "lwf" in regularisation
    assert set(_names(ranked)[:4]) == {"lwf", "si", "mas", "online_ewc"}  # constant memory over 50 tasks
    for advice in ranked:
        if advice.card["stores_data"]:
            assert advice.excluded and "may not be stored" in advice.reasons[0], advice.name
    assert [a.excluded for a in ranked] == sorted(a.excluded for a in ranked)  # excluded ones last
    lwf = next(a for a in ranked if a.name == "lwf")
    assert any("needs no old data" in r and "scenario 3" in r for r in lwf.reasons)
    generative = next(a for a in ranked if a.name == "generative")
    assert not generative.excluded and any("generator" in r for r in generative.reasons)


def test_zero_forgetting_with_task_labels_ranks_architecture_first(chapter):
    """Scenario 4: safety-critical, task identity available."""
    ranked = advise(Answers(zero_forgetting=True, task_labels=True), chapter)
    architecture = _names(ranked, "architecture")
    assert _names(ranked)[: len(architecture)] == architecture
    assert {a.card["forgetting"] for a in ranked[:3]} == {"None"}
    assert any("scenario 4" in r for r in ranked[0].reasons)


def test_few_tasks_start_with_replay(chapter):
    """Scenario 1: few tasks, a buffer allowed; regularisation next (it complements a small buffer)."""
    ranked = advise(Answers(tasks=3), chapter)
    assert ranked[0].card["family"] == "replay" and ranked[0].card["compute"] == "Low"
    assert {"replay", "der++"} == set(_names(ranked)[:2])
    order = _names(ranked)
    assert max(order.index(n) for n in _names(ranked, "regularisation")) < order.index("packnet")
    assert next(a for a in ranked if a.name == "progressive").excluded  # no task labels at test time


def test_many_tasks_prefer_scalable_replay_and_online_ewc(chapter):
    """Scenario 2: many tasks, streaming: A-GEM / DER++, online EWC; memory growing with T sinks."""
    ranked = advise(Answers(tasks=50), chapter)
    order = _names(ranked)
    assert ranked[0].card["family"] == "replay" and ranked[0].card["memory_growth"] == "O(1)"
    assert order.index("der++") < order.index("gem") and order.index("agem") < order.index("gem")
    assert order.index("online_ewc") < order.index("ewc")
    ewc = next(a for a in ranked if a.name == "ewc")
    assert any("grows with each of the 50 tasks" in r for r in ewc.reasons)


def test_many_tasks_penalise_methods_that_share_out_a_fixed_network(chapter):
    """PackNet's pruning rate and HAT's gates bound how many tasks one network holds (37.13's table:
    scalability Medium); with 50 tasks both lose 2, and progressive nets (which grow) do not."""
    few = {a.name: a.score for a in advise(Answers(tasks=10, task_labels=True), chapter)}
    many = {a.name: a for a in advise(Answers(tasks=50, task_labels=True), chapter)}
    for name in ("packnet", "hat"):
        assert any("fixed network" in r and "50 tasks" in r for r in many[name].reasons)
    assert not any("fixed network" in r for r in many["progressive"].reasons)
    assert strategy_card("packnet")["capacity"] == strategy_card("hat")["capacity"] == "bounded"
    assert strategy_card("mystery", chapter)["capacity"] == "unknown"
    assert few["packnet"] - many["packnet"].score >= 2


def test_a_fixed_architecture_excludes_architecture_methods_and_unknown_task_counts_cost_capacity(chapter):
    """37.13: with no storage and no architectural change, the regularisers (LwF) remain; methods
    sharing out a fixed network need the number of tasks for capacity planning."""
    fixed = advise(Answers(storage=False, fixed_architecture=True, task_labels=True), chapter)
    assert all(a.excluded for a in fixed if a.card["family"] == "architecture")
    assert any("must stay fixed" in r for a in fixed if a.name == "packnet" for r in a.reasons)
    assert {a.name for a in fixed if not a.excluded} >= {"lwf", "ewc", "si", "mas", "online_ewc"}
    known = {a.name: a.score for a in advise(Answers(task_labels=True), chapter)}
    unknown = {a.name: a.score for a in advise(Answers(task_labels=True, tasks_known=False), chapter)}
    assert unknown["packnet"] == known["packnet"] - 1 and unknown["progressive"] == known["progressive"]


def test_pretrained_model_ranks_adapters_first(chapter):
    """Scenario 5: a pre-trained foundation model; from scratch, adapters lose their edge."""
    ranked = advise(Answers(pretrained=True), chapter)
    assert ranked[0].name == "adapters" and any("scenario 5" in r for r in ranked[0].reasons)
    assert advise(Answers(pretrained=False), chapter)[0].name != "adapters"


def test_missing_task_labels_exclude_or_penalise_isolation(chapter):
    ranked = {a.name: a for a in advise(Answers(task_labels=False), chapter)}
    assert ranked["progressive"].excluded
    assert not ranked["packnet"].excluded and any("infer_task" in r for r in ranked["packnet"].reasons)


def test_compare_command_measures_the_top_candidates_beside_naive(chapter):
    answers = Answers(zero_forgetting=True)
    command = compare_command(advise(answers, chapter), answers, top=2)
    assert command.startswith("lifelong compare --benchmark split-digits --scenario class --strategies ")
    strategies = command.split("--strategies ")[1].split()[0].split(",")
    assert strategies[-1] == "naive" and len(strategies) == 3
    assert all(f"{n}.infer_task=true" in command for n in strategies[:2]
               if strategy_card(n, chapter)["task_labels"] == "inferable")
    labelled = Answers(zero_forgetting=True, task_labels=True)
    assert "--scenario task" in compare_command(advise(labelled, chapter), labelled)
    assert "infer_task" not in compare_command(advise(labelled, chapter), labelled)
    with pytest.raises(ConfigError, match="--top 0: compare at least one candidate"):
        compare_command(advise(answers, chapter), answers, top=0)


def test_fine_tuning_and_task_inference_are_read_from_the_card(chapter):
    cards = {n: strategy_card(n, chapter) for n in ("naive", "cumulative", "packnet", "progressive", "ewc")}
    assert [n for n, c in cards.items() if is_fine_tuning(c)] == ["naive"]
    assert [n for n, c in cards.items() if must_infer_task(c, task_labels=False)] == ["packnet"]
    assert not any(must_infer_task(c, task_labels=True) for c in cards.values())
    assert not is_fine_tuning({"family": "unknown"})  # a card without `stores` is not the reference


def test_real_registry_follows_the_chapter_for_the_families_present():
    """Holds for whatever strategies are registered now and as more land."""
    registry = STRATEGIES
    cards = {n: strategy_card(n) for n in registry.names()}
    assert all(c["family"] != "unknown" for c in cards.values())  # every real strategy declares one

    private = advise(Answers(tasks=50, storage=False))
    for advice in private:
        if advice.card["stores_data"]:
            assert advice.excluded, advice.name
    regularisation = _names(private, "regularisation")
    assert _names(private)[: len(regularisation)] == regularisation

    safe = advise(Answers(zero_forgetting=True, task_labels=True))
    if any(c["family"] == "architecture" and c["forgetting"] == "None" for c in cards.values()):
        assert safe[0].card["family"] == "architecture" and safe[0].card["forgetting"] == "None"
    if any(c["family"] == "replay" and c["stores_data"] for c in cards.values()):
        assert advise(Answers(tasks=3))[0].card["family"] == "replay"
    baselines = [a for a in advise(Answers()) if a.card["family"] == "baseline"]
    assert all(any("baseline" in r for r in a.reasons) for a in baselines)


def _command_parts(command: str) -> tuple[str, list[str], set[str]]:
    """(scenario, strategies, strategies given infer_task=true) of a printed compare command."""
    words = command.split()
    scenario = words[words.index("--scenario") + 1]
    names = words[words.index("--strategies") + 1].split(",")
    inferring = {w.split(".")[0] for w in words if w.endswith(".infer_task=true")}
    return scenario, names, inferring


def test_a_strategy_whose_settings_rule_out_the_scenario_is_excluded(chapter):
    """37.6: a card's `settings` must hold the scenario the answers imply (task with task labels, else
    class); a strategy guessing the task identity is judged as built with infer_task=True."""

    class DomainOrClass(Plugin):
        name, settings = "dreamer", ("domain", "class")

    class GuessesIntoDomainOnly(Plugin):
        name, needs_task_labels, settings = "guesser", True, ("task",)

        def __init__(self, infer_task: bool = False) -> None:
            if infer_task:
                self.needs_task_labels, self.settings = False, ("task", "domain")

    chapter.register("dreamer", family="replay", stores="generator", forgetting="Very Low")(DomainOrClass)
    chapter.register("guesser", family="architecture", stores="masks", forgetting="None")(GuessesIntoDomainOnly)
    card = strategy_card("guesser", chapter)
    assert card["settings"] == ["task"] and card["settings_infer_task"] == ["task", "domain"]
    assert strategy_card("ewc", chapter)["settings_infer_task"] is None  # no infer_task switch
    assert strategy_card("packnet", chapter)["settings_infer_task"] == ["task", "domain", "class"]

    labelled = {a.name: a for a in advise(Answers(zero_forgetting=True, task_labels=True), chapter)}
    assert labelled["dreamer"].excluded and labelled["dreamer"].reasons[0] == (
        "excluded: runs in the domain / class scenarios only, not in the task scenario your answers imply "
        "(37.6 scenarios)")
    assert not labelled["guesser"].excluded
    unlabelled = {a.name: a for a in advise(Answers(zero_forgetting=True), chapter)}
    assert not unlabelled["dreamer"].excluded and not unlabelled["packnet"].excluded  # infer_task=True
    assert unlabelled["guesser"].excluded and "task / domain scenarios only" in unlabelled["guesser"].reasons[0]
    assert runs_in_scenario({"name": "m"}, task_labels=True) == "unknown"  # never guessed, never excluded

    # compare_command keeps such a strategy out even when the rules ranked it in
    answers = Answers(zero_forgetting=True, task_labels=True)
    no_scenario_rule = tuple(r for r in guide.RULES if "runs_in_scenario" not in r.card)
    ranked = advise(answers, chapter, no_scenario_rule)
    assert not next(a for a in ranked if a.name == "dreamer").excluded
    assert "dreamer" not in _command_parts(compare_command(ranked, answers, top=50))[1]


def test_the_reported_answer_set_no_longer_recommends_generative_for_the_task_scenario():
    """`advise --task-labels --zero-forgetting --pretrained --fixed-architecture --memory low --compute high`
    printed `--scenario task --strategies der++,generative,der,naive`, which `compare` refused."""
    answers = Answers(tasks=10, storage=True, zero_forgetting=True, task_labels=True, pretrained=True,
                      memory="low", compute="high", fixed_architecture=True)
    ranked = {a.name: a for a in advise(answers)}
    assert strategy_card("generative")["settings"] == ["domain", "class"]
    assert ranked["generative"].excluded
    assert "not in the task scenario" in ranked["generative"].reasons[0]
    scenario, names, _ = _command_parts(compare_command(list(ranked.values()), answers))
    assert scenario == "task" and "generative" not in names and names[-1] == "naive"


@functools.cache
def _built(name: str, infer_task: bool) -> tuple[tuple[str, ...], bool]:
    (plugin,) = build_strategy(name, {"infer_task": True} if infer_task else {})
    return tuple(plugin.settings), plugin.needs_task_labels


def test_every_answer_set_prints_a_command_whose_strategies_run_in_its_scenario(monkeypatch):
    """Every combination of answers: each strategy of the printed compare command supports the printed
    scenario per its card and per the plugin it builds (the engine's check before training)."""
    monkeypatch.setattr(guide, "strategy_card", functools.cache(strategy_card))  # cards do not depend on answers
    cards = {n: strategy_card(n) for n in STRATEGIES.names()}
    flags = ("storage", "zero_forgetting", "task_labels", "pretrained", "fixed_architecture", "tasks_known")
    levels = ("low", "medium", "high")
    seen = set()
    for values, memory, compute, tasks in itertools.product(
            itertools.product((True, False), repeat=len(flags)), levels, levels, (3, 10, 50)):
        answers = Answers(tasks=tasks, memory=memory, compute=compute, **dict(zip(flags, values, strict=True)))
        scenario, names, inferring = _command_parts(compare_command(advise(answers), answers))
        assert scenario == ("task" if answers.task_labels else "class")
        for name in names:
            card = cards[STRATEGIES.canonical(name)]
            assert (name in inferring) == must_infer_task(card, answers.task_labels), (name, answers)
            settings = card["settings_infer_task"] if name in inferring else card["settings"]
            assert scenario in settings, (name, answers)
            built, needs_task_labels = _built(name, name in inferring)
            assert scenario in built and not (needs_task_labels and scenario != "task"), (name, answers)
            seen.add((name, scenario))
    assert len(seen) > 4  # the loop did recommend strategies in both scenarios
    assert {s for _, s in seen} == {"task", "class"}
