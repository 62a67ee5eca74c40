"""The aggregator base classes: validate a Jacobian, form its Gramian, turn weights into an update."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lifelong.core.errors import ConfigError, DataError, IncompatibleError, ShapeMismatchError


def check_jacobian(J: Tensor, where: str, samples: int = 1) -> None:
    """Raise unless `J` is a finite (k tasks × p parameters) tensor with k ≥ 1, or, when
    `samples` > 1, a stack of that many such Jacobians (samples × k × p)."""
    dims, shape = (2, "(k tasks, p parameters)") if samples == 1 else \
        (3, f"({samples} samples, k tasks, p parameters)")
    if not isinstance(J, Tensor) or J.dim() != dims or J.shape[-2] < 1 or (samples > 1 and J.shape[0] != samples):
        got = tuple(J.shape) if isinstance(J, Tensor) else type(J).__name__
        how = "stack one flattened gradient per task (lifelong.grad.jacobian does this)" if samples == 1 else \
            f"stack the Jacobians of {samples} disjoint parts of the batch (the multi-task engine does this)"
        raise ShapeMismatchError(f"{where}: expected a Jacobian of shape {shape} with k >= 1, got {got}; {how}")
    if not torch.isfinite(J).all():
        bad = sorted({int(i[-2]) for i in (~torch.isfinite(J)).nonzero()})
        raise DataError(
            f"{where}: the Jacobian of shape {tuple(J.shape)} has non-finite entries in the rows of "
            f"tasks {bad}; check those tasks' losses or lower the learning rate"
        )


def check_losses(losses: Tensor | None, k: int, where: str) -> Tensor:
    """The task losses (k,) as a detached tensor; raise unless they are k finite values ≥ 0 (the
    aggregators that take them use their magnitudes: logs, lengths, scales)."""
    if losses is None:
        raise IncompatibleError(f"{where} weighs the task gradients by the task losses; call it as "
                                "aggregator(J, losses) (the multi-task engine passes them)")
    losses = torch.as_tensor(losses).detach()
    if losses.shape != (k,):
        raise ShapeMismatchError(f"{where}: expected the {k} task losses as a vector of shape ({k},), "
                                 f"got shape {tuple(losses.shape)}")
    if not torch.isfinite(losses).all():
        raise DataError(f"{where}: the task losses {losses.tolist()} are not all finite; lower the "
                        "learning rate or check the tasks' targets")
    if (losses < 0).any():
        raise DataError(f"{where}: the task losses {losses.tolist()} must be >= 0 (it uses their "
                        "magnitudes: logs, lengths or scales); shift or rescale the negative ones")
    return losses


def check_representation(representation: Tensor | None, p: int, where: str) -> Tensor:
    """The activations z the task gradients were taken at, detached and as (batch × features);
    raise unless they are given, finite, batch-first and have the Jacobian's p entries."""
    if representation is None:
        raise IncompatibleError(
            f"{where} needs the activations z the task gradients were taken at (the sign of z, summed over "
            "the batch, picks the mask); use it as a multi-task weighting on the shared representation "
            "(on_representation: the engine passes z), or call it as aggregator(J, representation=z) "
            "with J the gradients w.r.t. z (k tasks x z.numel())"
        )
    if not isinstance(representation, Tensor) or representation.dim() < 1 or len(representation) < 1 \
            or representation.numel() != p:
        got = tuple(representation.shape) if isinstance(representation, Tensor) else type(representation).__name__
        raise ShapeMismatchError(f"{where}: expected the representation z (batch first) with as many entries as "
                                 f"the Jacobian has columns ({p}), got {got}; take J w.r.t. this z")
    representation = representation.detach()
    if not torch.isfinite(representation).all():
        raise DataError(f"{where}: the representation z has non-finite entries; lower the learning rate or "
                        "check the inputs")
    return representation.reshape(len(representation), -1)


def gramian(J: Tensor) -> Tensor:
    """G = J Jᵀ (k × k), formed in J's dtype and returned symmetric in float64 on the CPU."""
    G = (J @ J.T).to("cpu", torch.float64)
    return (G + G.T) / 2


class GeneratorState(nn.Module):
    """Holds the `torch.Generator` a stochastic method draws from and keeps its state in state_dict;
    without one given, a generator seeded from torch's global one (so `torch.manual_seed` sets it)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ConfigError(f"generator must be a torch.Generator (or None for a fresh one), got {generator!r}")
        self.generator = generator if generator is not None else \
            torch.Generator().manual_seed(int(torch.randint(2**62, ())))

    def get_extra_state(self) -> Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: Tensor) -> None:
        self.generator.set_state(state)


class Aggregator(nn.Module):
    """Maps a Jacobian (k × p) to one update direction (p); call it as `aggregator(J)`.

    `on_representation` tells the multi-task engine to build the Jacobian from the gradients of
    the task losses w.r.t. the shared representation (the encoder's output), aggregate those, and
    back-propagate the aggregated vector through the encoder (MGDA-UB, GradDrop); otherwise the
    Jacobian is taken w.r.t. the shared parameters. `needs_losses` asks for the task losses' values
    too: `aggregator(J, losses)` (k,). `samples` > 1 asks for that many independent estimates of
    J (samples × k × p), the Jacobians of disjoint parts of the batch (double sampling: MoDo,
    SDMGrad). `needs_representation` asks for the activations z the Jacobian was taken at (batch
    first): `aggregator(J, representation=z)` (GradDrop reads their sign). `last_weights` holds the
    task weights of the last call (k,), for logging. An aggregator whose weights do not depend on J
    implements `combination(k)` (`jacobian_free`): its update wᵀJ is then the gradient of Σ_t w_t L_t,
    which the multi-task trainer takes with one backward instead of forming J.
    """

    on_representation: bool = False
    needs_losses: bool = False
    needs_representation: bool = False
    samples: int = 1
    lazy: tuple[str, ...] = ()  # buffers (or parameters) whose shapes are known only at the first call

    def __init__(self) -> None:
        super().__init__()
        self.last_weights: Tensor | None = None

    def forward(self, J: Tensor, losses: Tensor | None = None, representation: Tensor | None = None) -> Tensor:
        where = type(self).__name__
        check_jacobian(J, where, self.samples)
        if self.needs_losses:
            losses = check_losses(losses, J.shape[-2], where)
        if self.needs_representation:
            return self.aggregate(J, losses if self.needs_losses else None,
                                  representation=check_representation(representation, J.shape[-1], where))
        return self.aggregate(J, losses) if self.needs_losses else self.aggregate(J)

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        """The update direction of a validated Jacobian (and the task losses when `needs_losses`,
        the (batch × features) representation as `representation=` when `needs_representation`)."""
        raise NotImplementedError

    def check_tasks(self, k: int) -> None:
        """Raise, before training, when the aggregator cannot work with `k` tasks (no-op here)."""

    def combination(self, k: int) -> Tensor:
        """This call's task weights (k,) when they do not depend on the Jacobian (a stochastic aggregator
        draws them here; `last_weights` records them); implemented only by such aggregators."""
        raise NotImplementedError(f"{type(self).__name__}'s weights depend on the Jacobian")

    @property
    def jacobian_free(self) -> bool:
        """Whether the update is `combination(k) @ J` whatever J (it implements `combination`)."""
        return type(self).combination is not Aggregator.combination

    def weigh(self, w: Tensor, J: Tensor) -> Tensor:
        """wᵀJ in J's dtype and device, recording w as `last_weights`."""
        self.last_weights = w.detach()
        return w.to(dtype=J.dtype, device=J.device) @ J

    def task_scales(self, losses: Tensor) -> Tensor | None:
        """Factors (k,) on each task's gradient of its own parameters (its head), or None to leave
        them as they are; methods that transform the losses give the transform's derivative."""
        return None

    def lazy_state(self, name: str, shape: tuple[int, ...], fill: float = 0.0) -> Tensor:
        """The state `name` (one of `lazy`), made `shape` and filled with `fill` at the first call;
        a ShapeMismatchError when it was made for another shape (another model or task set)."""
        current = getattr(self, name)
        if not current.numel():
            current = torch.full(shape, fill, dtype=current.dtype, device=current.device)
            setattr(self, name, current)
        if tuple(current.shape) != tuple(shape):
            raise ShapeMismatchError(f"{type(self).__name__}: its state {name!r} has shape {tuple(current.shape)} "
                                     f"but this Jacobian needs {tuple(shape)}; build a new aggregator for "
                                     "another model or task set")
        return current

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        for name in self.lazy:  # take the saved shapes before loading into them
            if prefix + name in state_dict:
                current = getattr(self, name)
                empty = torch.empty_like(state_dict[prefix + name], device=current.device)
                if isinstance(current, nn.Parameter):
                    current.data = empty
                else:
                    setattr(self, name, empty)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        public = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "training"}
        return ", ".join(f"{k}={v!r}" for k, v in public.items() if isinstance(v, (int, float, bool)))


class GramianAggregator(Aggregator):
    """An aggregator whose update is `weights(J Jᵀ) @ J`: subclasses implement `weights`, or
    `combination` when the weights do not depend on G (then G is not formed)."""

    def weights(self, G: Tensor) -> Tensor:
        """Task weights (k,) from the Gramian G (k × k, float64, CPU)."""
        return self.combination(len(G))

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        return self.weigh(self.combination(len(J)) if self.jacobian_free else self.weights(gramian(J)), J)
