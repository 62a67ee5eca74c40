"""Registries, seeding, typed errors, run records and checkpoints shared by every module."""

from lifelong.core.errors import LifelongError, UnknownNameError
from lifelong.core.registry import Registry
from lifelong.core.seeding import resolve_device, seed_everything

__all__ = ["LifelongError", "Registry", "UnknownNameError", "resolve_device", "seed_everything"]
