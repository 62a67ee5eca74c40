"""Build strategies by name: `"ewc+replay"` becomes the list of plugins the engine runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lifelong.continual.plugin import Plugin
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.registries import STRATEGIES


def split_spec(spec: str) -> list[str]:
    """The canonical names in a `a+b` strategy spec; the `+` signs that end a name stay with it, so
    `ewc+der++`, `der+++hat` and `der++ + hat` all parse (each empty piece between two `+` is one
    more `+` on the name before it)."""
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


def build_strategy(spec: str, args: Mapping[str, Any] | None = None) -> list[Plugin]:
    """Plugins for `spec`; `args` is the builder's kwargs for one strategy, or {name: kwargs} for `a+b`.

    `naive` contributes no plugin when combined with others.
    """
    names = split_spec(spec)
    args = dict(args or {})
    grouped = all(isinstance(v, Mapping) for v in args.values()) and all(k in STRATEGIES for k in args)
    if len(names) == 1 and not (args and grouped):
        args = {names[0]: args}
    per_name = {STRATEGIES.canonical(k): v for k, v in args.items() if k in STRATEGIES}
    stray = sorted(set(args) - {k for k in args if k in STRATEGIES and STRATEGIES.canonical(k) in names})
    if stray:
        raise ConfigError(f"strategy {spec!r}: arguments of a combined strategy are grouped by "
                          f"strategy name ({', '.join(names)}); these groups match none: {stray}")
    check_one_architecture(spec, names)
    plugins = [STRATEGIES.build(n, **dict(per_name.get(n) or {})) for n in names]
    return [p for p in plugins if p.name != "naive" or len(plugins) == 1]
