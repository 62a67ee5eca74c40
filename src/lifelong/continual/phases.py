"""A strategy's own training phases on the current experience (PackNet's retraining, DEN's phases).

The engine's loop trains each experience once; methods that train in several phases with
different parameter sets (retrain after pruning, train a new head alone, train new units) run
the extra phases here: Adam over the given parameters, shuffled slices drawn from the engine's
generator (so runs stay reproducible and resumable), cross-entropy on the task-masked outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from lifelong.continual.engine import total_loss
from lifelong.continual.plugin import Context
from lifelong.core.optimizers import build_optimizer

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fit(ctx: Context, params: Sequence[torch.Tensor], forward: Forward, *, name: str, epochs: int,
        batch_size: int, lr: float, penalty: Callable[[], torch.Tensor] | None = None,
        after_backward: Callable[[], None] | None = None,
        after_step: Callable[[], None] | None = None) -> None:
    """Train `params` with Adam for `epochs` on the experience's training data.

    `forward(x, t)` gives logits; `penalty()` is added to the loss; `after_backward` may edit
    gradients (masks); `after_step` may edit parameters (proximal steps). A non-finite loss
    raises as in the engine, its terms named after the strategy `name`.
    """
    exp = ctx.experience
    x, y, t = exp.train_x, exp.train_y, exp.train_t()
    optimizer = build_optimizer("adam", params, lr)
    ctx.model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=ctx.generator).to(ctx.device)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            terms = {f"{name}.ce": F.cross_entropy(ctx.mask(forward(x[idx], t[idx]), t[idx]), y[idx])}
            if penalty is not None:
                terms[f"{name}.penalty"] = penalty()
            loss = total_loss(terms, f"in {name}'s own training phase on experience {ctx.index}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward()
            optimizer.step()
            if after_step is not None:
                with torch.no_grad():
                    after_step()


@torch.no_grad()
def mean_loss(ctx: Context, forward: Forward, batch_size: int = 2048) -> float:
    """Mean cross-entropy of the model on the experience's training data (evaluation mode)."""
    exp = ctx.experience
    ctx.model.eval()
    total = 0.0
    for start in range(0, exp.n_train, batch_size):
        x, y = exp.train_x[start:start + batch_size], exp.train_y[start:start + batch_size]
        t = torch.full_like(y, exp.task)
        total += float(F.cross_entropy(ctx.mask(forward(x, t), t), y, reduction="sum"))
    return total / exp.n_train
