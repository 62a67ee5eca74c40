"""A backbone as an ordered list of layers, the device it lives on, seeded re-initialisation, eval
mode and frozen normalisation statistics.

Architecture strategies (progressive columns, HAT gates, adapters, DEN) rebuild a network layer
by layer; they need the backbone as a plain sequence, which `layer_list` extracts and checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from lifelong.core.errors import IncompatibleError

WEIGHTED = (nn.Linear, nn.Conv2d)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode inside the block, restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    module.training = False


def freeze_statistics(model: nn.Module) -> list[RemovableHandle]:
    """Keep every layer with running statistics (BatchNorm) of `model` in eval mode, whatever
    `model.train()` says: it normalises with its stored statistics and never updates them, so
    frozen weights compute what they did (Mallya & Lazebnik 2018's training of later tasks).
    Remove the returned hooks to release them."""
    return [m.register_forward_pre_hook(_stay_in_eval) for m in model.modules()
            if getattr(m, "track_running_stats", False)]


def couples_rows(model: nn.Module, *, in_training: bool = False) -> bool:
    """True when a layer of `model` normalises each row with statistics of its batch (BatchNorm
    in training mode), so a row's output depends on the rows it is forwarded with; `in_training`
    asks it of the model as training will put it, whatever its mode now."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and (in_training or m.training)
               for m in model.modules())


def is_weighted(layer: nn.Module) -> bool:
    """True for the layers that carry units (linear and 2-D convolution layers)."""
    return isinstance(layer, WEIGHTED)


def units(layer: nn.Module) -> int:
    """Output units of a weighted layer (features of a linear layer, channels of a convolution)."""
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def device_of(module: nn.Module) -> torch.device:
    """The device of `module`'s parameters; IncompatibleError when it has none."""
    param = next(module.parameters(), None)
    if param is None:
        raise IncompatibleError(
            f"{type(module).__name__} has no parameters, so architecture strategies have no linear "
            "or conv layer to rebuild: use an 'mlp' or 'lenet' backbone")
    return param.device


def layer_list(backbone: nn.Module, input_shape: Sequence[int]) -> list[nn.Module]:
    """The leaf layers of `backbone` in order, checked on a probe to compute what it computes.

    A backbone with branches (a ResNet's shortcuts) is not a plain sequence and is refused.
    """
    leaves = [m for m in backbone.modules() if next(m.children(), None) is None]
    device = device_of(backbone)
    probe = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0)).to(device)
    with evaluating(backbone), torch.no_grad():
        expected, h = backbone(probe), probe
        try:
            for layer in leaves:
                h = layer(h)
        except RuntimeError:  # shapes that only fit with the skipped branches
            h = None
    if h is None or h.shape != expected.shape or not torch.allclose(h, expected):
        raise IncompatibleError(
            f"the backbone {type(backbone).__name__} is not a plain sequence of layers (its forward "
            "is not its layers applied in order); architecture strategies rebuild it layer by layer: "
            "use an 'mlp' or 'lenet' backbone")
    if not any(is_weighted(m) for m in leaves):
        raise IncompatibleError(f"the backbone {type(backbone).__name__} has no linear or conv layer")
    return leaves


def reset_parameters(layer: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise a linear/conv layer as PyTorch does by default, drawing from `generator`.

    Values are drawn on the CPU (where the engine's generator lives) and copied to the layer.
    """
    with torch.no_grad():
        weight = torch.empty(layer.weight.shape)
        layer.weight.copy_(nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator))
        if layer.bias is not None:
            bound = 1 / math.sqrt(layer.weight[0].numel())
            bias = torch.empty(layer.bias.shape)
            layer.bias.copy_(nn.init.uniform_(bias, -bound, bound, generator=generator))
    return layer
