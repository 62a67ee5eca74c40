"""What the multi-task trainer refuses before training: settings that do not fit the data, the
weighting or the model, each with the reason and what to change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.models.layer_list import couples_rows


def _name(weighting: nn.Module) -> str:
    return type(getattr(weighting, "aggregator", weighting)).__name__


def check_batch_sizes(sizes: int | Mapping[str, int], tasks: Sequence[str], shared: bool) -> None:
    """Refuse a per-task batch_size mapping that does not name exactly the data's tasks, or that
    gives tasks sharing their inputs different sizes."""
    if not isinstance(sizes, Mapping):
        return
    if set(sizes) != set(tasks):
        missing, unknown = sorted(set(tasks) - set(sizes)), sorted(set(sizes) - set(tasks))
        raise ConfigError(f"train.batch_size maps tasks {sorted(sizes)} but the data's tasks are "
                          f"{list(tasks)} (missing {missing}, unknown {unknown}); give one size per "
                          "task, or a single number for all")
    if shared and len(set(sizes.values())) > 1:
        raise ConfigError(f"train.batch_size gives the tasks different sizes {dict(sizes)}, but these tasks "
                          "share their inputs, so every step takes one batch for all; give a single number")


def check_sampled_weighting(weighting: nn.Module) -> None:
    """Refuse a weighting that cannot work when a task sampler draws only some tasks at a step."""
    if weighting.kind == "gradient" or getattr(weighting, "needs_losses_after_step", False):
        what = "a gradient aggregator needs every task's gradient" if weighting.kind == "gradient" \
            else f"{_name(weighting)} needs every task's loss before and after"
        raise IncompatibleError(f"{what} at each step, but a task sampler draws only some tasks; drop the "
                                "sampler (every task each step) or use another loss weighting")
    if not getattr(weighting, "weighs_subsets", False):
        raise IncompatibleError(f"{_name(weighting)} cannot weigh only the tasks a sampler draws at a step; "
                                "drop the sampler (every task each step) or use e.g. uniform, uncertainty, "
                                "dwa or rlw")


def check_samples(weighting: nn.Module, shared: bool, batch_size: int) -> None:
    """Refuse what an aggregator needing several samples of J (MoDo, SDMGrad) cannot run on."""
    samples = getattr(weighting, "samples", 1)
    if samples == 1:
        return
    if not shared:
        raise IncompatibleError(f"{_name(weighting)} needs {samples} independent Jacobians, the disjoint parts "
                                "of one batch; it works with tasks that share inputs, not with per-task data")
    if getattr(weighting, "on_representation", False):
        raise IncompatibleError(f"{_name(weighting)} needs several samples of the Jacobian and cannot work "
                                "on the shared representation")
    if batch_size < samples:
        raise IncompatibleError(f"{_name(weighting)} splits every batch into {samples} disjoint parts; use "
                                f"batch_size >= {samples}, got {batch_size}")


def check_micro_batch(size: int | None, largest_batch: int, model: nn.Module, weighting: nn.Module,
                      shared: bool) -> None:
    """Refuse micro-batches whose gradients would not add up to the whole batch's."""
    if size is None or size >= largest_batch:
        return
    how = "drop train.micro_batch (or make it >= the batch size)"
    if couples_rows(model, in_training=True):
        raise IncompatibleError(f"micro_batch={size} splits each batch, but {type(model).__name__} has "
                                "BatchNorm, which normalises with the statistics of the rows forwarded "
                                f"together, so the parts' gradients are not the batch's; {how}, or use a "
                                "model without BatchNorm (e.g. LayerNorm or GroupNorm)")
    if not shared:
        return
    if getattr(weighting, "on_representation", False) or getattr(weighting, "needs_shared", False):
        raise IncompatibleError(f"{_name(weighting)} needs the whole batch's graph (its shared representation "
                                f"or shared parameters) in one forward, which micro_batch={size} splits; {how}")
    if getattr(weighting, "samples", 1) > 1:
        raise IncompatibleError(f"{_name(weighting)} already splits each batch into {weighting.samples} parts; "
                                f"{how}")


def check_shared_batch(weighting: nn.Module, shared: bool) -> None:
    """Refuse a weighting that measures every task on one shared batch (GradNorm) on per-task data."""
    if not shared and getattr(weighting, "needs_shared", False):
        raise IncompatibleError(f"{_name(weighting)} measures each task's gradient on the shared parameters of "
                                "one batch all tasks share; it works with tasks that share inputs, not with "
                                "per-task data")


def check_has_shared(weighting: nn.Module, model: nn.Module, n_trained: int, n_shared: int) -> None:
    """Refuse a weighting that acts on the shared parameters (a gradient aggregator, GradNorm) for a
    model that trains none of them (`n_trained` of its `n_shared`): soft sharing shares none, or they
    are all frozen; an aggregator would silently train as uniform weighting."""
    if n_trained or not (weighting.kind == "gradient" or getattr(weighting, "needs_shared", False)):
        return
    what = "shares none (each task has its own)" if not n_shared else \
        "trains none of those it shares (they are all frozen: requires_grad=False)"
    how = "an architecture that shares parameters (e.g. hps, mmoe)" if not n_shared else "unfreeze some of them"
    raise IncompatibleError(f"{_name(weighting)} acts on the parameters the tasks share, but {type(model).__name__} "
                            f"{what}, so it has nothing to act on; use a loss weighting that needs no shared "
                            f"parameters (e.g. uniform, uncertainty, dwa, rlw) or {how}")


def check_epochs(weighting: nn.Module, epochs: int) -> None:
    """Refuse a run too short for the weighting's own objective to train (STCH's warm-up epochs)."""
    needed = getattr(weighting, "min_epochs", 1)
    if epochs < needed:
        raise ConfigError(f"{_name(weighting)} trains on its warm-up objective for its first {needed - 1} epochs, "
                          f"so {epochs} epoch(s) would never train on its own; train for at least {needed} epochs "
                          "(train.epochs, --epochs) or lower its warmup_epochs")
