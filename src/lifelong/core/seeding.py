"""One call that seeds every random source and returns the generator the engine draws from."""

from __future__ import annotations

import random

import numpy as np
import torch

from lifelong.core.checks import check_count
from lifelong.core.errors import ConfigError

MAX_SEED = 2**63 - 1  # torch takes 64-bit seeds


def seed_everything(seed: int, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh CPU `torch.Generator` seeded with `seed`."""
    if check_count("seed", seed, allow_zero=True) > MAX_SEED:
        raise ConfigError(f"seed {seed} is too large; torch takes seeds in [0, {MAX_SEED}]")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`auto`/None → cuda when available, else cpu; anything else as torch parses it, or a
    ConfigError for a name torch does not know, a device this build or machine does not have, or
    `meta` (no values to train on)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a device torch knows; use 'cpu', 'cuda', 'cuda:1' "
                          "or 'auto'") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asks for a GPU, but this torch has no CUDA device (a CPU "
                          "build, or no GPU); use device=cpu or auto")
    if parsed.type == "meta":
        raise ConfigError(f"device {device!r} holds shapes, not values: nothing can train on it; use cpu or auto")
    if parsed.type != "cpu":
        try:  # mps, xpu, ...: torch knows the name, but this build or machine may not have the device
            torch.empty(0, device=parsed)
        except (RuntimeError, AssertionError):
            raise ConfigError(f"device {device!r} is not available in this torch build or on this machine; "
                              "use device=cpu or auto") from None
    return parsed
