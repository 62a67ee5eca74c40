"""Per-step cost of every multi-task weighting beside a hand-written uniform-weighting loop, and
the task Jacobian (layerwise, or one batched backward) beside T separate backward passes.

Run: `.venv/bin/python benchmarks/weighting.py [--steps 10] [--tasks 2,4,8] [--names pcgrad,mgda]`.
Prints two markdown tables and returns their rows. Each weighting runs through the multi-task
trainer's own step (`MultiTaskTrainer.train_step`: the Jacobian, the aggregation, sample splits,
after-step losses, checks) on a shared MLP (64-256-256, ReLU) with one linear regression head per
task, batch 256, SGD; the hand-written loop trains the same network with summed losses. The Jacobian is
timed on three sizes of that model, on the default dense-task trunk, on MMoE, CGC, cross-stitch and
two-level PLE (`SIZES`) with 1 and 2 threads, the three ways interleaved (fastest of 8 rounds).
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from common import markdown_table, microseconds
from torch import nn

from lifelong.core.registries import WEIGHTINGS
from lifelong.data.multitask import TaskSpec, shared_inputs
from lifelong.grad import jacobian
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.architectures.ple import PLE
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.presets import conv_trunk
from lifelong.multitask.weighting import build_weighting

MEDIUM = (256, 64, 256)  # batch, inputs (channels), hidden units (channels)
# label → (architecture, (batch, inputs, hidden), image side or None): hard sharing on MLPs of three
# sizes and on the default dense-task trunk (two 3×3 convolutions), MMoE on 8 MLP experts, CGC
# (one shared and one own expert per task), cross-stitch MLP columns (mixed after each stage: every
# task's cotangent runs through every column, the stitched Jacobian pushes them down together), and
# two-level PLE (one shared and one own expert per task and level).
SIZES: dict[str, tuple[str, tuple[int, int, int], int | None]] = {
    "HPS small (batch 64, 32-64-64)": ("hps", (64, 32, 64), None),
    "HPS medium (batch 256, 64-256-256)": ("hps", MEDIUM, None),
    "HPS large (batch 256, 256-1024-1024)": ("hps", (256, 256, 1024), None),
    "HPS conv (batch 32, 16×16, 3-32-32 channels)": ("hps", (32, 3, 32), 16),
    "MMoE (batch 256, 8 experts 64-128-128)": ("mmoe", (256, 64, 128), None),
    "CGC (batch 256, experts 64-128-128)": ("cgc", (256, 64, 128), None),
    "cross-stitch (batch 256, 64-128-128 columns)": ("cross_stitch", (256, 64, 128), None),
    "PLE, 2 levels (batch 256, experts 64-128-128, 128-128-128)": ("ple", (256, 64, 128), None),
}

ARGS = {"constant": lambda k: {"weights": [1.0] * k}}  # weightings with a required argument
MIN_TASKS = {"krum": 3}  # Krum scores each gradient against its k − 2 nearest others


class Problem:
    """k regression tasks on one batch of shared inputs (seeded) and a library architecture on them:
    `arch` on a Linear/ReLU trunk with one linear head per task, or with `image` set on the default
    dense trunk with one 1×1 convolution head per task (per-pixel targets)."""

    def __init__(self, k: int, seed: int = 0, size: tuple[int, int, int] = MEDIUM, image: int | None = None,
                 arch: str = "hps") -> None:
        gen = torch.Generator().manual_seed(seed)
        batch, inputs, hidden = size
        pixels = () if image is None else (image, image)
        self.x = torch.randn(batch, inputs, *pixels, generator=gen)
        self.targets = {f"t{i}": torch.randn(batch, 1, *pixels, generator=gen) for i in range(k)}
        tasks = [TaskSpec(t, "mse", 1) for t in self.targets]
        self.data = shared_inputs("bench", tasks, self.x, self.targets, self.x[:1],
                                  {t: y[:1] for t, y in self.targets.items()})
        torch.manual_seed(seed)
        def mlp(width: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

        trunk = (lambda: conv_trunk(inputs, hidden)) if image else (lambda: mlp(inputs))
        # PLE's second level reads the first level's outputs
        self.model = build_architecture(arch, self.data, trunk, **({"upper_expert": lambda: mlp(hidden)}
                                                                   if arch == "ple" else {}))
        self.own = [self.model.own_parameters(t) for t in self.targets]
        self.params = [*self.model.shared_parameters(), *(p for own in self.own for p in own)]
        self.layerwise = self.model.layerwise()

    def _loss(self, task: str, out: torch.Tensor) -> torch.Tensor:
        return ((out - self.targets[task]) ** 2).mean()

    def losses(self) -> torch.Tensor:
        """The task losses from one forward of the model."""
        out = self.model(self.x)
        return torch.stack([self._loss(t, out[t]) for t in self.targets])

    def layerwise_jacobian(self) -> None:
        def losses(outputs: list[list[torch.Tensor]]) -> torch.Tensor:
            return torch.stack([self._loss(t, self.model.layerwise_output(t, self.x, own))
                                for t, own in zip(self.targets, outputs, strict=True)])

        self.layerwise.jacobian(self.x, losses, self.own)


def hand_written_step(model: nn.Module, x: torch.Tensor, ys: dict[str, torch.Tensor],
                      opt: torch.optim.Optimizer) -> None:
    """The baseline on the trainer's network: sum the task losses, backward, step."""
    opt.zero_grad(set_to_none=True)
    out = model(x)
    sum(F.mse_loss(out[t], y) for t, y in ys.items()).backward()
    opt.step()


def trainer(k: int, weighting: nn.Module, seed: int = 0) -> MultiTaskTrainer:
    """The multi-task trainer on `Problem(k)`: one batch of shared inputs, HPS on the 64-256-256
    trunk, one linear regression head per task, SGD."""
    problem = Problem(k, seed=seed)
    config = TrainConfig(batch_size=len(problem.x), lr=1e-3, optimizer="sgd")
    return MultiTaskTrainer(problem.model, weighting, problem.data, config, torch.Generator().manual_seed(seed))


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


def shared_layers(problem: Problem) -> list[nn.Sequential]:
    """The model's trunks, its cross-stitch columns, or PLE's shared experts (the first level's task
    experts, and each level's shared experts one after the other), each as one Sequential reading x."""
    model, k = problem.model, len(problem.targets)
    if isinstance(model, PLE):
        return [*(e for t in model.task_names for e in model.task_experts[0][t]),
                nn.Sequential(*(m for level in model.shared_experts for e in level for m in e))]
    return model.trunks() or [nn.Sequential(*(m for stage in model.stages for m in stage[t])) for t in range(k)]


def trunk_gflop(k: int, problem: Problem) -> float:
    """GFLOP of one forward of the shared layers and k backward passes (each: every layer's weight
    gradient and, past the first layer of a trunk or column, its input gradient); the task-specific
    parts are left out (negligible heads, gates and cross-stitch units, but also CGC's own experts)."""
    total = 0
    with torch.no_grad():
        for trunk in shared_layers(problem):
            macs, h = [], problem.x
            for layer in trunk:
                out = layer(h)
                if isinstance(layer, (nn.Linear, nn.Conv2d)):  # output positions × weights
                    macs.append(out.numel() // out.shape[-1 if isinstance(layer, nn.Linear) else 1]
                                * layer.weight.numel())
                h = out
            total += 2 * sum(macs) + k * 2 * (sum(macs) + sum(macs[1:]))
    return total / 1e9


def gemm_peak(problem: Problem) -> float:
    """GFLOP/s of this machine on a trunk's largest product: (batch × hidden) @ (hidden × hidden), or
    a convolution's (batch·pixels × 9·channels) @ (9·channels × channels)."""
    layer = [m for m in shared_layers(problem)[0] if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    rows = problem.x.shape[0] * problem.x[0, 0].numel()
    inner = layer.weight[0].numel()
    a, b = torch.randn(rows, inner), torch.randn(inner, layer.weight.shape[0])
    return 2 * a.numel() * b.shape[1] / 1e3 / microseconds({"mm": lambda: a @ b}, calls=20, rounds=5)["mm"]


def jacobian_rows(tasks: Sequence[int], calls: int, threads: Sequence[int] = (1, 2)) -> list[dict]:
    """The task Jacobian over the shared and task parameters three ways: layer by layer (what the
    trainer does for these models), one vmapped backward (`jacobian`, what it does for any other
    model) and T separate backward passes, for every model, thread count and number of
    tasks; with the GFLOP/s the separate passes reach beside the machine's matrix-product peak: all
    three do the same arithmetic, so where the separate passes run near the peak no exact method
    can be much faster."""
    rows = []
    for (label, (arch, dims, image)), n_threads, k in itertools.product(SIZES.items(), threads, tasks):
        torch.set_num_threads(n_threads)
        problem = Problem(k, size=dims, image=image, arch=arch)

        def batched(p: Problem = problem) -> None:
            jacobian(p.losses(), p.params)

        def separate(p: Problem = problem) -> None:
            losses = p.losses()
            rows = [torch.autograd.grad(loss, p.params, retain_graph=True, allow_unused=True, materialize_grads=True)
                    for loss in losses]
            torch.stack([torch.cat([g.reshape(-1) for g in row]) for row in rows])

        ways = {"batched": batched, "separate": separate}
        if problem.layerwise is not None:
            ways["layerwise"] = problem.layerwise_jacobian
        start = time.perf_counter()
        separate()
        once = time.perf_counter() - start  # at least 20 ms a round, so short calls are not all noise
        us = microseconds(ways, calls=max(calls, math.ceil(0.02 / once)), rounds=8)
        row = {"model": label, "threads": n_threads, "tasks": k, "batched ms": us["batched"] / 1e3,
               "separate ms": us["separate"] / 1e3, "batched / separate": us["batched"] / us["separate"],
               "separate GFLOP/s": trunk_gflop(k, problem) / us["separate"] * 1e6,
               "matmul peak GFLOP/s": gemm_peak(problem)}
        if "layerwise" in us:
            row["layerwise ms"] = us["layerwise"] / 1e3
            row["layerwise / separate"] = us["layerwise"] / us["separate"]
        rows.append(row)
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
