"""Per-step cost of every multi-task weighting beside a hand-written uniform-weighting loop, and
the batched Jacobian (one backward) beside T separate backward passes.

Run: `.venv/bin/python benchmarks/weighting.py [--steps 10] [--tasks 2,4,8] [--names pcgrad,mgda]`.
Prints two markdown tables and returns their rows. The weightings run on a shared MLP
(64-256-256, ReLU) with one linear regression head per task, batch 256, SGD. The Jacobian is
timed on three sizes of that model (`SIZES`) with 1 and 2 threads, the two ways interleaved
(fastest of 8 rounds).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Sequence

import torch
from common import markdown_table, microseconds
from torch import nn

from lifelong.core.registries import WEIGHTINGS
from lifelong.grad import jacobian, write_grad
from lifelong.multitask.weighting import build_weighting

MEDIUM = (256, 64, 256)  # batch, inputs, hidden units
SIZES = {"small (batch 64, 32-64-64)": (64, 32, 64), "medium (batch 256, 64-256-256)": MEDIUM,
         "large (batch 256, 256-1024-1024)": (256, 256, 1024)}


ARGS = {"constant": lambda k: {"weights": [1.0] * k}}  # weightings with a required argument
MIN_TASKS = {"krum": 3}  # Krum scores each gradient against its k − 2 nearest others


class Problem:
    """Data, shared trunk, heads and optimiser for k regression tasks (seeded)."""

    def __init__(self, k: int, extra: Sequence[nn.Parameter] = (), seed: int = 0,
                 size: tuple[int, int, int] = MEDIUM) -> None:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        batch, inputs, hidden = size
        self.x = torch.randn(batch, inputs, generator=gen)
        self.y = torch.randn(batch, k, generator=gen)
        self.shared = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.Linear(hidden, k)  # k heads of one output each, as one matrix
        self.shared_params, self.head_params = list(self.shared.parameters()), list(self.heads.parameters())
        self.opt = torch.optim.SGD([*self.shared_params, *self.head_params, *extra], lr=1e-3)

    def forward(self, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.shared(self.x[rows])
        return z, ((self.heads(z) - self.y[rows]) ** 2).mean(0)


def hand_written_step(problem: Problem) -> None:
    """The baseline: sum the task losses, backward, step."""
    problem.opt.zero_grad(set_to_none=True)
    problem.forward()[1].sum().backward()
    problem.opt.step()


def library_step(problem: Problem, weighting: nn.Module, step: int) -> None:
    """One step as the multi-task engine takes it, for either kind of weighting."""
    problem.opt.zero_grad(set_to_none=True)
    z, losses = problem.forward()
    if weighting.kind == "loss":
        weighting.combine(losses, shared=problem.shared_params, step=step).backward()
    else:
        head_grads = torch.autograd.grad(losses.sum(), problem.head_params, retain_graph=True)
        write_grad(problem.head_params, torch.cat([g.reshape(-1) for g in head_grads]))
        if weighting.on_representation:
            z.backward(weighting.aggregate(jacobian(losses, [z], retain_graph=True), losses.detach()).view_as(z))
        elif weighting.samples > 1:  # MoDo, SDMGrad: one Jacobian per disjoint part of the batch
            parts = torch.arange(len(problem.x)).tensor_split(weighting.samples)
            J = torch.stack([jacobian(problem.forward(slice(int(p[0]), int(p[-1]) + 1))[1], problem.shared_params)
                             for p in parts])
            write_grad(problem.shared_params, weighting.aggregate(J, losses.detach()))
        else:
            write_grad(problem.shared_params,
                       weighting.aggregate(jacobian(losses, problem.shared_params), losses.detach()))
    problem.opt.step()
    if getattr(weighting, "needs_losses_after_step", False):  # FAMO: the same batch's losses after the step
        with torch.no_grad():
            weighting.after_step(problem.forward()[1])


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
        base = Problem(k)
        uniform = seconds_per_call(lambda _i, p=base: hand_written_step(p), steps)
        rows.append({"method": "hand-written uniform loop", "tasks": k,
                     "ms/step": 1e3 * uniform, "vs uniform": 1.0})
        for name in names:
            if k < MIN_TASKS.get(name, 1):
                continue
            weighting = build_weighting(name, k, **ARGS.get(name, lambda _k: {})(k))
            problem = Problem(k, extra=list(weighting.parameters()))
            seconds = seconds_per_call(lambda i, p=problem, w=weighting: library_step(p, w, i), steps)
            rows.append({"method": name, "tasks": k, "ms/step": 1e3 * seconds,
                         "vs uniform": seconds / uniform})
    return rows


def trunk_gflop(k: int, size: tuple[int, int, int]) -> float:
    """GFLOP of one forward of the trunk and k backward passes (each: both layers' weight
    gradients and the hidden layer's input gradient); the heads are negligible."""
    batch, inputs, hidden = size
    forward = 2 * batch * (inputs * hidden + hidden * hidden)
    backward = 2 * batch * (inputs * hidden + 2 * hidden * hidden)
    return (forward + k * backward) / 1e9


def gemm_peak(size: tuple[int, int, int]) -> float:
    """GFLOP/s of this machine on the trunk's largest product (batch × hidden) @ (hidden × hidden)."""
    batch, _, hidden = size
    a, b = torch.randn(batch, hidden), torch.randn(hidden, hidden)
    return 2 * batch * hidden * hidden / 1e3 / microseconds({"mm": lambda: a @ b}, calls=20, rounds=5)["mm"]


def jacobian_rows(tasks: Sequence[int], calls: int, threads: Sequence[int] = (1, 2)) -> list[dict]:
    """Batched vs separate Jacobians for every size, thread count and number of tasks, with the
    GFLOP/s the separate passes reach beside the machine's matrix-product peak: both ways do the
    same arithmetic, so where the separate passes run near the peak no exact method can be faster."""
    rows = []
    for (size, dims), n_threads, k in itertools.product(SIZES.items(), threads, tasks):
        torch.set_num_threads(n_threads)
        problem = Problem(k, size=dims)

        def batched(p: Problem = problem) -> None:
            jacobian(p.forward()[1], p.shared_params)

        def separate(p: Problem = problem) -> None:
            losses = p.forward()[1]
            rows = [torch.autograd.grad(loss, p.shared_params, retain_graph=True) for loss in losses]
            torch.stack([torch.cat([g.reshape(-1) for g in row]) for row in rows])

        us = microseconds({"batched": batched, "separate": separate}, calls=calls, rounds=8)
        rows.append({"model": size, "threads": n_threads, "tasks": k, "batched ms": us["batched"] / 1e3,
                     "separate ms": us["separate"] / 1e3, "batched / separate": us["batched"] / us["separate"],
                     "separate GFLOP/s": trunk_gflop(k, dims) / us["separate"] * 1e6,
                     "matmul peak GFLOP/s": gemm_peak(dims)})
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
    print(markdown_table(jac, ["model", "threads", "tasks", "batched ms", "separate ms", "batched / separate",
                               "separate GFLOP/s", "matmul peak GFLOP/s"]))
    return rows + [{"method": "jacobian", **r} for r in jac]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tasks", default="2,4,8")
    parser.add_argument("--names", default="")
    ns = parser.parse_args()
    main([int(t) for t in ns.tasks.split(",")], ns.steps, [n for n in ns.names.split(",") if n])
