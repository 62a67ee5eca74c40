"""What the continual engine refuses before training: strategies that cannot run in the stream's
setting or together, and a model that cannot run on the stream's inputs or score its classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lifelong.continual.importance import output_width
from lifelong.continual.plugin import Plugin
from lifelong.continual.strategies import composition_problems
from lifelong.core.errors import ShapeMismatchError
from lifelong.data.stream import Stream


def grows_with_classes(model: nn.Module) -> bool:
    """Whether the model's output layer grows as classes appear (an incremental head)."""
    return callable(getattr(getattr(model, "head", None), "adapt", None))


def setting_problems(plugins: Sequence[Plugin], model: nn.Module, stream: Stream, takes_task: bool,
                     epochs: int, batch_size: int) -> list[str]:
    """Why `plugins` and `model` cannot train `stream` for `epochs` in batches of `batch_size` (empty if they can)."""
    problems = []
    for p in plugins:
        if stream.setting not in p.settings:
            problems.append(f"strategy {p.name!r} supports {p.settings}, not {stream.setting!r}")
        if p.needs_task_labels and stream.setting != "task":
            problems.append(f"strategy {p.name!r} needs task labels: use setting 'task'")
    if takes_task and stream.setting != "task":
        problems.append("a multi-head model needs task labels: use setting 'task' or head 'single'")
    if grows_with_classes(model):
        problems += [f"strategy {p.name!r} keeps outputs laid out over every class, but this model's "
                     "output layer grows with the classes; use head 'single' or 'multi'"
                     for p in plugins if p.needs_fixed_width]
    problems += composition_problems(plugins, takes_task)
    return problems + [problem for p in plugins for problem in p.problems(stream, epochs, batch_size)]


def check_outputs(model: nn.Module, stream: Stream, takes_task: bool, device: torch.device) -> None:
    """Run the model (eval mode, no grad) on one training row of `stream` (of each task, for a model
    taking task labels); a ShapeMismatchError if that fails or, unless its head grows with the classes,
    if it scores fewer than the stream's classes (or more, in the task setting, whose class mask is
    laid out over the stream's classes)."""
    grows = grows_with_classes(model)
    for e in {e.task: e for e in (stream if takes_task else stream[:1])}.values():
        x, t = e.train_x[:1].to(device), e.train_t()[:1].to(device)
        width = output_width(model, x, t, what=f"stream {stream.name!r}, task {e.task}")
        wider = width > stream.n_classes and stream.setting == "task"
        if (width < stream.n_classes or wider) and not grows:
            raise ShapeMismatchError(
                f"the model gives {width} outputs but stream {stream.name!r} has {stream.n_classes} classes; "
                f"build it with {stream.n_classes} outputs (lifelong.models.build_model(..., "
                "stream.n_classes, ...)) or give it a head that grows with the classes ('incremental')")
