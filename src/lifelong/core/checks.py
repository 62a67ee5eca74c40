"""Checks of user-given arguments, shared by every area: each returns the value or raises a
ConfigError that names the argument and says what it must be."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from lifelong.core.errors import ConfigError


def check_count(what: str, value: int | None, *, allow_none: bool = False, allow_zero: bool = False) -> int | None:
    """`value` when it is a positive integer (0 too where allowed, or None), else a ConfigError naming `what`."""
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        kind = "an integer ≥ 0" if allow_zero else "a positive integer"
        raise ConfigError(f"{what} must be {kind}{' or None' if allow_none else ''}, got {value!r}")
    return value


def check_numbers(where: str, **values: float) -> list[float]:
    """`values` as floats, in order, or a ConfigError naming the first that is not a finite number
    (range checks are the caller's)."""
    out = []
    for name, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: {name} must be finite, got {value!r}")
        out.append(number)
    return out


def check_vector(what: str, values: Sequence[float] | torch.Tensor, length: int | None = None) -> torch.Tensor:
    """`values` as a float64 CPU vector of finite numbers (of `length` entries when given), or a
    ConfigError naming `what`."""
    try:
        vector = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{what} must be a list of numbers, got {values!r}") from None
    if vector.dim() != 1 or len(vector) == 0 or not torch.isfinite(vector).all() \
            or (length is not None and len(vector) != length):
        size = f"{length} " if length is not None else "a non-empty list of "
        raise ConfigError(f"{what} must be {size}finite numbers, got {values!r}")
    return vector


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


def check_list(what: str, value: Sequence, kind: str = "a list") -> list:
    """`value` as a list when it is a sequence other than a string, else a ConfigError saying `what`
    must be `kind` (e.g. "a list of layer widths, e.g. [400, 400]")."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(f"{what} must be {kind}; got {value!r}")
    return list(value)


def check_flag(what: str, value: bool) -> bool:
    """`value` when it is a bool, else a ConfigError naming `what` (the string "false" would read as true)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, got {value!r}")
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


def check_folder_name(what: str, value: str) -> str:
    """`value` when it names one folder (not empty, '.' or '..', without a path separator); else a ConfigError."""
    separators = [sep for sep in ("/", os.sep, os.altsep) if sep]
    if not isinstance(value, str) or value in ("", ".", "..") or any(sep in value for sep in separators) \
            or "\0" in value:
        raise ConfigError(f"{what} {value!r} must name one folder inside --out (not '.' or '..', no path "
                          "separator), e.g. --name my-run")
    return value
