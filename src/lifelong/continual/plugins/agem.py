"""Averaged GEM (Chaudhry et al. 2019): one reference gradient from a memory sample, closed form."""

from __future__ import annotations

from lifelong.continual.importance import flat_grads
from lifelong.continual.plugin import Batch, Context
from lifelong.continual.plugins.gem import EpisodicMemory, memory_losses, trainable
from lifelong.core.checks import check_count
from lifelong.core.registries import STRATEGIES
from lifelong.grad import agem_project, jacobian, write_grad


@STRATEGIES.register("agem", aliases=("a-gem", "a_gem"), family="replay", stores="buffer",
                     memory="O(buffer)", compute="Medium", forgetting="Moderate",
                     paper="Chaudhry et al. 2019, Efficient Lifelong Learning with A-GEM")
class AGEM(EpisodicMemory):
    """A-GEM (Chaudhry et al. 2019): keep the update from raising the average memory loss.

    After backward, g_ref is the gradient of the mean loss on `sample_size` rows drawn from the
    episodic memory of every past experience; when ⟨g, g_ref⟩ < 0 the gradient becomes
    g − (⟨g, g_ref⟩ / ‖g_ref‖²) g_ref (`lifelong.grad.agem_project`). Defaults from the paper:
    250 patterns per experience, reference batches of 256.
    """

    name = "agem"

    def __init__(self, patterns_per_experience: int = 250, sample_size: int = 256) -> None:
        super().__init__(patterns_per_experience)
        self.sample_size = check_count(f"{self.name}: sample_size", sample_size)

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        if self.memory is None or not len(self.memory):
            return
        params = trainable(ctx)
        loss = memory_losses(ctx, self.memory.sample(self.sample_size, ctx.generator)).mean()
        g = flat_grads(params)
        write_grad(params, agem_project(g, jacobian(loss[None], params)[0]) - g)
