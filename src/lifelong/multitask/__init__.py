"""Multi-task learning: architectures, loss weightings and gradient aggregators, task sampling,
the training engine and diagnostics. Submodules load on first use."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MultiTaskTrainer": "lifelong.multitask.engine",
    "TrainConfig": "lifelong.multitask.config",
    "MTLConfig": "lifelong.multitask.run",
    "run_mtl": "lifelong.multitask.run",
    "diagnose": "lifelong.multitask.diagnose",
    "build_architecture": "lifelong.multitask.architectures",
    "build_default": "lifelong.multitask.presets",
    "build_sampler": "lifelong.multitask.sampling",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lifelong.multitask' has no attribute {name!r}")
