"""Run configuration: a dataclass validated at once, loaded from YAML plus `key=value` overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lifelong.core.checks import check_folder_name
from lifelong.core.errors import ConfigError


@dataclass
class RunConfig:
    """Everything that defines a continual run; `results.json` and checkpoints record it."""

    benchmark: str = "split-digits"
    scenario: str = "class"
    strategy: str = "naive"
    strategy_args: dict[str, Any] = field(default_factory=dict)
    model: str = "mlp"
    model_args: dict[str, Any] = field(default_factory=dict)
    head: str = "single"
    benchmark_args: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    device: str = "cpu"
    out: str = "runs"
    name: str | None = None

    def run_name(self) -> str:
        """The run folder's name: `name`, else `<benchmark>-<scenario>-<strategy>-s<seed>` (one folder)."""
        default = f"{self.benchmark}-{self.scenario}-{self.strategy}-s{self.seed}"
        return check_folder_name("run name", self.name or default)

    def folder(self) -> Path:
        """The run folder: `<out>/<run_name()>`."""
        return Path(self.out) / self.run_name()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from a mapping, reporting every unknown key and every ill-typed value together."""
        clean, problems = typed_values(cls, values)
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems) +
                              f". Known keys: {', '.join(f.name for f in fields(cls))}")
        return cls(**clean)

    def diff(self, other: RunConfig, ignore: Iterable[str] = ("out", "device")) -> list[str]:
        """Keys whose values differ from `other`'s (used to refuse resuming another run)."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if k not in ignore and a[k] != b[k]]


def typed_values(cls: type, values: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """(values cast to the dataclass `cls`'s field types, every unknown key and ill-typed value)."""
    known = {f.name: f for f in fields(cls)}
    problems = [f"unknown key {f'{prefix}{k}'!r}" for k in values if k not in known]
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            continue
        try:
            clean[key] = _coerce(value, known[key])
        except (TypeError, ValueError) as exc:
            problems.append(f"{prefix}{key}: {exc}")
    return clean, problems


def _coerce(value: Any, f: dataclasses.Field) -> Any:
    kind = str(f.type)
    if value is None:
        if "None" in kind:
            return None
        raise TypeError("may not be empty")
    if isinstance(value, Mapping) and "dict" in kind:
        check_names(value)
        return dict(value)
    if kind.startswith("dict"):
        raise TypeError(f"expected a mapping, got {value!r}")
    for name, cast in (("int", int), ("float", float), ("str", str)):
        if kind.startswith(name):
            if cast is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            if cast in (int, float) and isinstance(value, bool):
                raise TypeError(f"expected a number, got {value!r}")
            return cast(value)
    return value


def check_names(mapping: Mapping[Any, Any]) -> None:
    """Raise TypeError unless every key of `mapping`, and of the mappings in it, is a string
    (they become argument names)."""
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"keys are argument names and must be strings, got {key!r}; quote it")
        if isinstance(value, Mapping):
            check_names(value)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["lr=0.01", "strategy_args.lambda=100"]` → nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. lr=0.01)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} descends into a non-mapping key {part!r}")
        node[leaf] = parse_value(raw, f"override {item!r}") if raw else None
    return out


def parse_value(text: str, what: str) -> Any:
    """`text` read as YAML, or a ConfigError naming `what` (the item the text came from)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{what}: {text!r} is not a valid YAML value ({problem}); close every "
                          "bracket and quote such strings, e.g. key=[1,2] or key='a: b'") from exc


def nest(key: str, value: Any) -> dict[str, Any]:
    """A dotted key as nested mappings: `("model_args.hidden", [32])` → `{"model_args": {"hidden": [32]}}`."""
    *parents, leaf = key.split(".")
    out: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        out = {part: out}
    return out


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `extra` wins."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """A RunConfig from an optional YAML file, then `overrides` (already parsed) on top."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read as UTF-8 text ({type(exc).__name__}); "
                              "pass a YAML file") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(loaded).__name__}")
        values = loaded
    return RunConfig.from_dict(merge(values, overrides or {}))
