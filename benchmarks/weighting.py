"""Per-step cost of every multi-task weighting beside a hand-written uniform-weighting loop, and
the task Jacobian (layerwise, or one batched backward) beside T separate backward passes.

Run: `.venv/bin/python benchmarks/weighting.py [--steps 10] [--tasks 2,4,8] [--names pcgrad,mgda]`.
Prints two markdown tables and returns their rows. Each weighting runs through the multi-task
trainer's own step (`MultiTaskTrainer.train_step`: the Jacobian, the aggregation, sample splits,
after-step losses, checks) on a shared MLP (64-256-256, ReLU) with one linear regression head per
task, batch 256, SGD; the hand-written loop trains the same network with summed losses. The Jacobian is
timed on three sizes of that model and on the default dense-task trunk (`SIZES`) with 1 and 2
threads, the three ways interleaved (fastest of 8 rounds).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from common import markdown_table, microseconds
from torch import nn

from lifelong.core.registries import WEIGHTINGS
from lifelong.data.multitask import TaskSpec, shared_inputs
from lifelong.grad import jacobian
from lifelong.grad.layerwise import LayerwiseTrunk
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.presets import conv_trunk
from lifelong.multitask.weighting import build_weighting

MEDIUM = (256, 64, 256)  # batch, inputs (channels), hidden units (channels)
# The MLP sizes, and the default dense-task trunk (two 3×3 convolutions) on 16×16 images.
SIZES = {"small (batch 64, 32-64-64)": (64, 32, 64), "medium (batch 256, 64-256-256)": MEDIUM,
         "large (batch 256, 256-1024-1024)": (256, 256, 1024),
         "conv (batch 32, 16×16, 3-32-32 channels)": (32, 3, 32)}
IMAGE = {"conv (batch 32, 16×16, 3-32-32 channels)": 16}


ARGS = {"constant": lambda k: {"weights": [1.0] * k}}  # weightings with a required argument
MIN_TASKS = {"krum": 3}  # Krum scores each gradient against its k − 2 nearest others


class Problem:
    """Data, shared trunk and one regression head per task, for k tasks (seeded): an MLP with linear
    heads, or with `image` set the default dense trunk with 1×1 convolution heads (per-pixel targets)."""

    def __init__(self, k: int, seed: int = 0, size: tuple[int, int, int] = MEDIUM, image: int | None = None) -> None:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        batch, inputs, hidden = size
        pixels = () if image is None else (image, image)
        self.x = torch.randn(batch, inputs, *pixels, generator=gen)
        self.y = torch.randn(batch, k, *pixels, generator=gen)
        if image is None:
            self.shared = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
            self.heads = nn.ModuleList([nn.Linear(hidden, 1) for _ in range(k)])
        else:
            self.shared = conv_trunk(inputs, hidden)
            self.heads = nn.ModuleList([nn.Conv2d(hidden, 1, 1) for _ in range(k)])
        self.private = [list(head.parameters()) for head in self.heads]
        self.params = [*self.shared.parameters(), *self.heads.parameters()]
        self.layerwise = LayerwiseTrunk(self.shared)

    def losses(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each task's mean squared error from its head on its copy of the features."""
        return torch.stack([((head(z) - self.y[:, t:t + 1]) ** 2).mean()
                            for t, (head, z) in enumerate(zip(self.heads, features, strict=True))])

    def forward(self) -> torch.Tensor:
        return self.losses([self.shared(self.x)] * len(self.heads))


def hand_written_step(model: nn.Module, x: torch.Tensor, ys: dict[str, torch.Tensor],
                      opt: torch.optim.Optimizer) -> None:
    """The baseline on the trainer's network: sum the task losses, backward, step."""
    opt.zero_grad(set_to_none=True)
    out = model(x)
    sum(F.mse_loss(out[t], y) for t, y in ys.items()).backward()
    opt.step()


def trainer(k: int, weighting: nn.Module, seed: int = 0) -> MultiTaskTrainer:
    """The multi-task trainer on the same problem as `Problem(k)`: one batch of shared inputs, the
    64-256-256 trunk, one linear regression head per task, SGD."""
    problem = Problem(k, seed=seed)
    tasks = [TaskSpec(f"t{i}", "mse", 1) for i in range(k)]
    targets = {f"t{i}": problem.y[:, i:i + 1] for i in range(k)}
    data = shared_inputs("bench", tasks, problem.x, targets, problem.x[:1], {t: y[:1] for t, y in targets.items()})
    torch.manual_seed(seed)
    model = build_architecture("hps", data, lambda: problem.shared)
    config = TrainConfig(batch_size=len(problem.x), lr=1e-3, optimizer="sgd")
    return MultiTaskTrainer(model, weighting, data, config, torch.Generator().manual_seed(seed))


def seconds_per_call(fn: Callable[[int], None], calls: int, repeats: int = 3, warmup: int = 3) -> float:
    """The best of `repeats` mean wall times of fn(i) over `calls` calls, after `warmup` calls
    (the machine is shared: the fastest run is the least disturbed)."""
    for i in range(warmup):
        fn(i)
    means = []
    for r in range(repeats):
        start = time.perf_counter()
        for i in range(calls):
            fn(warmup + r * calls + i)
        means.append((time.perf_counter() - start) / calls)
    return min(means)


def weighting_rows(tasks: Sequence[int], names: Sequence[str], steps: int) -> list[dict]:
    rows = []
    for k in tasks:
        base = trainer(k, build_weighting("uniform", k))
        x, ys = base.train["t0"][0], {t: base.train[t][1] for t in base.tasks}
        opt = torch.optim.SGD(base.model.parameters(), lr=1e-3)
        uniform = seconds_per_call(lambda _i, m=base.model, x=x, ys=ys, o=opt: hand_written_step(m, x, ys, o), steps)
        rows.append({"method": "hand-written uniform loop", "tasks": k,
                     "ms/step": 1e3 * uniform, "vs uniform": 1.0})
        batch = torch.arange(len(x))
        for name in names:
            if k < MIN_TASKS.get(name, 1):
                continue
            tr = trainer(k, build_weighting(name, k, **ARGS.get(name, lambda _k: {})(k)))
            seconds = seconds_per_call(lambda _i, t=tr, b=batch: t.train_step(b), steps)
            rows.append({"method": name, "tasks": k, "ms/step": 1e3 * seconds,
                         "vs uniform": seconds / uniform})
    return rows


def trunk_gflop(k: int, problem: Problem) -> float:
    """GFLOP of one forward of the trunk and k backward passes (each: every layer's weight gradient
    and, past the first layer, its input gradient); the heads are negligible."""
    macs, h = [], problem.x
    with torch.no_grad():
        for layer in problem.shared:
            out = layer(h)
            if isinstance(layer, (nn.Linear, nn.Conv2d)):  # output positions × weights
                macs.append(out.numel() // out.shape[-1 if isinstance(layer, nn.Linear) else 1] * layer.weight.numel())
            h = out
    return (2 * sum(macs) + k * 2 * (sum(macs) + sum(macs[1:]))) / 1e9


def gemm_peak(problem: Problem) -> float:
    """GFLOP/s of this machine on the trunk's largest product: (batch × hidden) @ (hidden × hidden),
    or a convolution's (batch·pixels × 9·channels) @ (9·channels × channels)."""
    layer = problem.shared[-2]
    rows = problem.x.shape[0] * problem.x[0, 0].numel()
    inner = layer.weight[0].numel()
    a, b = torch.randn(rows, inner), torch.randn(inner, layer.weight.shape[0])
    return 2 * a.numel() * b.shape[1] / 1e3 / microseconds({"mm": lambda: a @ b}, calls=20, rounds=5)["mm"]


def jacobian_rows(tasks: Sequence[int], calls: int, threads: Sequence[int] = (1, 2)) -> list[dict]:
    """The task Jacobian over the trunk and heads three ways: layer by layer (what the trainer does
    for this Linear/ReLU trunk), one vmapped backward (`jacobian`, what it does for any other trunk)
    and T separate backward passes, for every size, thread count and number of tasks; with the
    GFLOP/s the separate passes reach beside the machine's matrix-product peak: all three do the
    same arithmetic, so where the separate passes run near the peak no exact method can be much
    faster."""
    rows = []
    for (size, dims), n_threads, k in itertools.product(SIZES.items(), threads, tasks):
        torch.set_num_threads(n_threads)
        problem = Problem(k, size=dims, image=IMAGE.get(size))

        def layerwise(p: Problem = problem) -> None:
            p.layerwise.jacobian(p.x, p.losses, p.private)

        def batched(p: Problem = problem) -> None:
            jacobian(p.forward(), p.params)

        def separate(p: Problem = problem) -> None:
            losses = p.forward()
            rows = [torch.autograd.grad(loss, p.params, retain_graph=True, allow_unused=True, materialize_grads=True)
                    for loss in losses]
            torch.stack([torch.cat([g.reshape(-1) for g in row]) for row in rows])

        us = microseconds({"layerwise": layerwise, "batched": batched, "separate": separate}, calls=calls, rounds=8)
        rows.append({"model": size, "threads": n_threads, "tasks": k, "layerwise ms": us["layerwise"] / 1e3,
                     "batched ms": us["batched"] / 1e3, "separate ms": us["separate"] / 1e3,
                     "layerwise / separate": us["layerwise"] / us["separate"],
                     "batched / separate": us["batched"] / us["separate"],
                     "separate GFLOP/s": trunk_gflop(k, problem) / us["separate"] * 1e6,
                     "matmul peak GFLOP/s": gemm_peak(problem)})
    torch.set_num_threads(1)
    return rows


def main(tasks: Sequence[int] = (2, 4, 8), steps: int = 10, names: Sequence[str] | None = None) -> list[dict]:
    """Time every weighting (or `names`) for each task count; print both tables; return the rows."""
    torch.set_num_threads(1)
    names = list(names) if names else WEIGHTINGS.names()
    rows = weighting_rows(tasks, names, steps)
    print(markdown_table(rows, ["method", "tasks", "ms/step", "vs uniform"]))
    jac = jacobian_rows(tasks, max(2, steps // 2))
    print()
    print(markdown_table(jac, ["model", "threads", "tasks", "layerwise ms", "batched ms", "separate ms",
                               "layerwise / separate", "batched / separate", "separate GFLOP/s",
                               "matmul peak GFLOP/s"]))
    return rows + [{"method": "jacobian", **r} for r in jac]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tasks", default="2,4,8")
    parser.add_argument("--names", default="")
    ns = parser.parse_args()
    main([int(t) for t in ns.tasks.split(",")], ns.steps, [n for n in ns.names.split(",") if n])
