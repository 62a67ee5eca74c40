"""Checks of user-given arguments, shared by every area: each returns the value or raises a
ConfigError that names the argument and says what it must be."""

from __future__ import annotations

import math

from lifelong.core.errors import ConfigError


def check_count(what: str, value: int | None, *, allow_none: bool = False) -> int | None:
    """`value` when it is a positive integer (or None where allowed), else a ConfigError naming `what`."""
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        hint = " or None" if allow_none else ""
        raise ConfigError(f"{what} must be a positive integer{hint}, got {value!r}")
    return value


def check_positive(what: str, value: float, *, allow_zero: bool = True) -> float:
    """`value` as a float, or a ConfigError naming `what` when it is negative, zero or not finite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{what} must be a finite number {bound}, got {value}")
    return value


def check_counts(where: str, **counts: int) -> None:
    """Raise a ConfigError naming the first of `counts` that is not a positive integer."""
    for name, value in counts.items():
        check_count(f"{where}: {name}", value)


def check_iterations(what: str, value: int) -> int:
    """`value` when it is an integer ≥ 0 (0 skips that training), else a ConfigError naming `what`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{what} must be an integer ≥ 0 (0 skips that training), got {value!r}")
    return value
