"""Build strategies by name: `"ewc+replay"` becomes the list of plugins the engine runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lifelong.continual.plugin import Plugin
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.registries import STRATEGIES


def split_spec(spec: str) -> list[str]:
    """The canonical names in a `a+b` strategy spec; the `+` signs that end a name stay with it, so
    `ewc+der++`, `der+++hat` and `der++ + hat` all parse (each empty piece between two `+` is one
    more `+` on the name before it)."""
    if not isinstance(spec, str):
        raise ConfigError(f"a strategy spec is a string of names joined by '+' (e.g. 'ewc+replay'), got {spec!r}")
    parts: list[str] = []
    for piece in (p.strip() for p in spec.split("+")):
        if piece:
            parts.append(piece)
        elif parts:
            parts[-1] += "+"
    names = [STRATEGIES.canonical(part) for part in parts]
    if not names:
        raise ConfigError("empty strategy name; try 'naive' or see `lifelong list strategy`")
    return names


def check_one_architecture(spec: str, names: list[str]) -> None:
    """Refuse a spec naming more than one strategy of the registry's "architecture" family."""
    rebuilders = [n for n in names if STRATEGIES.meta(n).get("family") == "architecture"]
    if len(rebuilders) > 1:
        raise IncompatibleError(
            f"strategy {spec!r} combines the architecture strategies {rebuilders}; each rebuilds or "
            "masks the model for itself, so they do not stack: keep one of them (a replay strategy may "
            "go with it, e.g. 'replay+hat')")


def args_by_strategy(args: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`args` keyed by canonical strategy names; a ConfigError when two keys name one strategy (a
    name and its alias), whose groups would otherwise overwrite each other."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in args.items():
        name = STRATEGIES.canonical(key)
        if name in out:
            raise ConfigError(f"{where}: arguments for {name!r} are grouped under both {given[name]!r} and "
                              f"{key!r}; put them in one group")
        out[name], given[name] = value, key
    return out


def composition_problems(plugins: Sequence[Plugin], multi_head: bool = False) -> list[str]:
    """Why these strategies cannot train together (on a multi-head model or not), found before
    training; empty when they can."""
    def named(keep: Callable[[Plugin], bool]) -> str:
        return " and ".join(repr(p.name) for p in plugins if keep(p))

    def chooses_data(p: Plugin) -> bool:
        return type(p).train_data is not Plugin.train_data

    routers = named(lambda p: p.routes_model)
    runners = named(lambda p: p.runs_model or (multi_head and p.runs_model_per_head))
    anchored, growers = named(lambda p: p.anchors_parameters), named(lambda p: p.grows_parameters)
    predictors = [p.name for p in plugins if type(p).predict is not Plugin.predict]
    orderers = [p.name for p in plugins if type(p).epoch_order is not Plugin.epoch_order]
    # a plugin that keeps the model frozen by choosing no data to train on (prototypes' `freeze`)
    freezers = named(lambda p: chooses_data(p) and getattr(p, "freeze", False) is True)
    choosers = named(lambda p: chooses_data(p) and getattr(p, "freeze", False) is not True)
    problems = []
    if routers and runners:
        problems.append(
            f"{runners} run the model on inputs of their own (a Fisher, distillation targets per head, "
            f"memory gradients, difficulty scores or prototypes), which {routers} cannot route to each "
            "task's parameters (only the engine's training forward is routed); use them apart, or "
            "combine the architecture strategy with replay, der, der++ or si")
    if anchored and growers:
        problems.append(f"{anchored} keep a penalty over the model's parameters, but {growers} adds new "
                        "parameter tensors for every task, which the penalty cannot follow; use them apart")
    if len(predictors) > 1:
        problems.append(f"{' and '.join(map(repr, predictors))} each define how the model predicts at test "
                        "time (a classifier of their own, or per-task masks); keep one of them")
    if len(orderers) > 1:
        problems.append(f"{' and '.join(map(repr, orderers))} each set the order of every epoch's examples "
                        "(only one order can be followed); keep one of them")
    if freezers and choosers:
        problems.append(f"{freezers} keep the model frozen by giving it no data to train on (freeze=True), but "
                        f"{choosers} also choose each experience's training data, which would train the "
                        f"model after all; use them apart, or give {freezers} freeze=False to train the model")
    return problems


def build_strategy(spec: str, args: Mapping[str, Any] | None = None) -> list[Plugin]:
    """Plugins for `spec`; `args` is the builder's kwargs for one strategy, or {name: kwargs} for `a+b`.

    `naive` contributes no plugin when combined with others.
    """
    names = split_spec(spec)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"strategy {spec!r} names {twice} more than once; name each strategy once "
                          "(to weigh a penalty more, raise its coefficient)")
    args = dict(args or {})
    grouped = all(isinstance(v, Mapping) for v in args.values()) and all(k in STRATEGIES for k in args)
    if len(names) == 1 and not (args and grouped):
        args = {names[0]: args}
    per_name = args_by_strategy({k: v for k, v in args.items() if k in STRATEGIES}, f"strategy {spec!r}")
    stray = sorted(set(args) - {k for k in args if k in STRATEGIES and STRATEGIES.canonical(k) in names})
    if stray:
        raise ConfigError(f"strategy {spec!r}: arguments of a combined strategy are grouped by "
                          f"strategy name ({', '.join(names)}); these groups match none: {stray}")
    check_one_architecture(spec, names)
    plugins = [STRATEGIES.build(n, **dict(per_name.get(n) or {})) for n in names]
    return [p for p in plugins if p.name != "naive" or len(plugins) == 1]
