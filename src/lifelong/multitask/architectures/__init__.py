"""Multi-task architectures, registered in `lifelong.core.registries.ARCHITECTURES`."""

from __future__ import annotations

import inspect

from lifelong.core.registries import ARCHITECTURES
from lifelong.data.multitask import MultiTaskData
from lifelong.multitask.architectures.base import ModuleFactory, MultiTaskModel
from lifelong.multitask.architectures.cross_stitch import CrossStitch
from lifelong.multitask.architectures.hard_sharing import HardSharing
from lifelong.multitask.architectures.mmoe import MMoE, gate_input_error
from lifelong.multitask.architectures.ple import PLE, cgc
from lifelong.multitask.architectures.soft_sharing import SoftSharing
from lifelong.multitask.heads import build_heads, feature_shape


def build_architecture(name: str, data: MultiTaskData, trunk: ModuleFactory,
                       head_hidden: int | None = None, **kwargs) -> MultiTaskModel:
    """The architecture `name` for `data`: `trunk` is its backbone/expert factory, heads fit the tasks.

    The heads are sized by running one trunk on a zero batch of the data's dtype (token IDs reach an
    embedding trunk as such); architectures with gates get the data's input shape, and floating-point
    inputs (their gates are linear in the input).
    """
    builder = ARCHITECTURES.get(name)
    gated = "input_shape" in inspect.signature(builder).parameters
    last = kwargs.get("upper_expert") or trunk
    in_shape, dtype = data.input_shape, data.splits[data.task_names[0]].train_x.dtype
    if gated and not dtype.is_floating_point:
        raise gate_input_error(f"{name} on inputs of dtype {dtype}")
    if kwargs.get("upper_expert") is not None:
        in_shape, dtype = feature_shape(trunk(), in_shape, dtype), None  # the upper experts read trunk outputs
    heads = build_heads(data, feature_shape(last(), in_shape, dtype), head_hidden)
    if gated:
        kwargs.setdefault("input_shape", data.input_shape)
    return ARCHITECTURES.build(name, trunk, heads, **kwargs)


__all__ = ["CrossStitch", "HardSharing", "MMoE", "ModuleFactory", "MultiTaskModel", "PLE",
           "SoftSharing", "build_architecture", "cgc"]
