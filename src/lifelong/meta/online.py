"""OML/ANML meta-training (learn online, then remember) and their deployment as online learners.

Meta-objective (Javed & White 2019, eq. 4; Beaulieu et al. 2020 use the same loop): from the
prediction network's current weights, reset the output rows of the classes a trajectory
introduces, take one SGD step per trajectory element on the fast weights only, then score the
adapted network on the trajectory plus a random "remember" set. The meta-gradient flows into the
slow part (RLN / neuromodulatory net) and into the fast part's initial weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, vmap

from lifelong.core.checks import check_count, check_iterations, check_positive
from lifelong.core.errors import NonFiniteLossError, ShapeMismatchError
from lifelong.core.optimizers import build_optimizer
from lifelong.meta.benchmark import Episode
from lifelong.meta.fast_weights import Params, adapt_online, functional_loss, params_of, sgd_step
from lifelong.meta.maml import meta_step
from lifelong.meta.networks import MetaContinualNet

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batched_context(net: MetaContinualNet, x: torch.Tensor, n_batch_dims: int
                    ) -> tuple[torch.Tensor, ...]:
    """`net.context` of inputs with `n_batch_dims` leading batch dimensions, in one forward."""
    lead = x.shape[:n_batch_dims]
    return tuple(c.unflatten(0, lead) for c in net.context(x.flatten(0, n_batch_dims - 1)))


def reset_rows(fast: Params, keys: tuple[str, str], keep: torch.Tensor) -> Params:
    """Fast weights whose output rows with `keep == 0` are zero (weight and bias)."""
    w, b = keys
    return {**fast, w: fast[w] * keep.unsqueeze(-1), b: fast[b] * keep}


def online_meta_loss(net: MetaContinualNet, episode: Episode, criterion: Criterion, *,
                     lr: float, first_order: bool = False) -> torch.Tensor:
    """Mean over episodes of the remember-and-trajectory loss after online learning (vmapped)."""
    if episode.traj_x.shape[:3] != episode.traj_y.shape[:3]:
        raise ShapeMismatchError(
            f"episode: trajectory inputs {tuple(episode.traj_x.shape)} and targets "
            f"{tuple(episode.traj_y.shape)} must agree on (episodes, steps, batch)"
        )
    loss_fn = functional_loss(net.fast, criterion)
    fast0 = params_of(net.fast)
    keys = net.head_keys
    out_x, out_y = episode.outer()
    traj_ctx = batched_context(net, episode.traj_x, 3)
    out_ctx = batched_context(net, out_x, 2)

    def one(t_ctx: tuple[torch.Tensor, ...], t_y: torch.Tensor, o_ctx: tuple[torch.Tensor, ...],
            o_y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        fast = adapt_online(loss_fn, reset_rows(fast0, keys, keep), t_ctx, t_y, lr=lr,
                            first_order=first_order)
        return loss_fn(fast, o_ctx, o_y)

    return vmap(one)(traj_ctx, episode.traj_y, out_ctx, out_y, episode.keep).mean()


def meta_train(net: MetaContinualNet, sample: Callable[[torch.Generator, int], Episode],
               criterion: Criterion, *, steps: int, lr: float, meta_lr: float = 1e-4,
               meta_batch: int = 1, first_order: bool = False,
               generator: torch.Generator | None = None,
               callback: Callable[[int, float], None] | None = None) -> list[float]:
    """Meta-train `net` with Adam on the online meta-objective; returns the meta-loss per step.

    OML's paper defaults: meta_lr = 1e-4 (Adam); the inner `lr` is the benchmark's online rate.
    """
    steps, meta_batch, meta_lr = check_schedule(steps, meta_batch, meta_lr)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    optimizer = build_optimizer("adam", net.parameters(), meta_lr)
    losses = []
    for step in range(steps):
        loss = online_meta_loss(net, sample(gen, meta_batch), criterion, lr=lr,
                                first_order=first_order)
        losses.append(meta_step(optimizer, loss))
        if callback is not None:
            callback(step, losses[-1])
    return losses


def check_schedule(steps: int, meta_batch: int, meta_lr: float) -> tuple[int, int, float]:
    """The meta-training schedule, checked: `steps` ≥ 0, `meta_batch` ≥ 1 and `meta_lr` > 0."""
    return (check_iterations("meta_train: steps", steps),
            check_count("meta_train: meta_batch", meta_batch),
            check_positive("meta_train: meta_lr", meta_lr, allow_zero=False))


class OnlineLearner:
    """Deployment: the slow part is frozen; the prediction network learns online by plain SGD.

    Fast weights start from the network's prediction part (output rows zeroed when
    `reset_head`, as OML and ANML do for new classes) and live in a dictionary, so the module
    itself is never modified. `observe` takes one SGD step per `batch_size` samples, in order.
    """

    def __init__(self, net: MetaContinualNet, criterion: Criterion, lr: float,
                 batch_size: int = 1, reset_head: bool = False) -> None:
        self.net = net
        self.lr = check_positive("online learner: lr", lr, allow_zero=False)
        self.batch_size = check_count("online learner: batch_size", batch_size)
        self.loss_fn = functional_loss(net.fast, criterion)
        fast = {k: v.detach().clone() for k, v in params_of(net.fast).items()}
        if reset_head:
            n_out = fast[net.head_keys[1]].shape[0]
            fast = reset_rows(fast, net.head_keys, torch.zeros(n_out))
        self.fast = fast

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Learn from samples in order, one SGD step per `batch_size` of them."""
        if x.shape[0] != y.shape[0]:
            raise ShapeMismatchError(
                f"observe: {x.shape[0]} inputs but {y.shape[0]} targets; give one target per input"
            )
        with torch.no_grad():
            ctx = self.net.context(x)
        for start in range(0, x.shape[0], self.batch_size):
            part = slice(start, start + self.batch_size)
            self.fast = sgd_step(self.loss_fn, self.fast, tuple(c[part] for c in ctx), y[part],
                                 self.lr, first_order=True)
        if not all(bool(torch.isfinite(w).all()) for w in self.fast.values()):
            raise NonFiniteLossError(f"online learning diverged: the fast weights became non-finite at learning "
                                     f"rate {self.lr}; lower the online learning rate (benchmark.online_lr)")

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of the network with the current fast weights."""
        return functional_call(self.net.fast, self.fast, self.net.context(x))
