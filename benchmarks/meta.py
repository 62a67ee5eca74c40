"""Speed of the meta-learning inner loops: tasks batched with `torch.func.vmap` vs a Python loop.

Run: `.venv/bin/python benchmarks/meta.py [--repeats 10]`. Prints a markdown table and returns
its rows. Each row times one meta-gradient (forward through the inner loop, then backward to the
slow weights), best of 3 runs of `repeats`:

1. MAML on sinusoids (Finn et al. 2017: MLP 1-40-40-1, K = 10, 25 tasks, second order) with 1
   and 5 inner steps: a hand-written loop over tasks with `torch.autograd.grad(create_graph=True)`
   (the baseline), `lifelong.meta.adapt` in a Python loop over tasks, and `maml_loss` (vmapped).
2. OML's online meta-loss on incremental sine waves (trajectories of 50 SGD steps, net 11-64-64
   | 64-64-1): a Python loop over episodes with `adapt_online` vs `online_meta_loss` (vmapped).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from common import best_of, markdown_table
from torch import nn
from torch.func import functional_call

from lifelong.core.seeding import seed_everything
from lifelong.meta.benchmark import Episode
from lifelong.meta.fast_weights import adapt, adapt_online, functional_loss, params_of
from lifelong.meta.maml import maml_loss
from lifelong.meta.networks import OMLNet, oml_mlp
from lifelong.meta.online import batched_context, online_meta_loss, reset_rows
from lifelong.meta.sine import random_sines, sine_benchmark, sine_samples


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, None]:
    """Seconds per call of `fn().backward()`."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn().backward()
    return (time.perf_counter() - start) / repeats, None


def sinusoid_tasks(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Support and query sets (10 points each, shape (n, 10, 1)) of `n` random sinusoids."""
    x, y = (t.unsqueeze(-1) for t in sine_samples(*random_sines((n,), gen), 20, gen))
    return x[:, :10], y[:, :10], x[:, 10:], y[:, 10:]


def hand_written_maml(model: nn.Module, data: tuple[torch.Tensor, ...], steps: int, lr: float
                      ) -> torch.Tensor:
    """The baseline: a loop over tasks, inner SGD with autograd.grad(create_graph=True)."""
    sx, sy, qx, qy = data
    names, init = zip(*model.named_parameters(), strict=True)
    losses = []
    for t in range(sx.shape[0]):
        fast = list(init)
        for _ in range(steps):
            loss = F.mse_loss(functional_call(model, dict(zip(names, fast, strict=True)), (sx[t],)),
                              sy[t])
            grads = torch.autograd.grad(loss, fast, create_graph=True)
            fast = [p - lr * g for p, g in zip(fast, grads, strict=True)]
        losses.append(F.mse_loss(functional_call(model, dict(zip(names, fast, strict=True)),
                                                 (qx[t],)), qy[t]))
    return torch.stack(losses).mean()


def maml_cases(model: nn.Module, data: tuple[torch.Tensor, ...], steps: int
               ) -> dict[str, Callable[[], torch.Tensor]]:
    """MAML meta-loss three ways: hand-written loop, library loop, library vmap."""
    loss_fn = functional_loss(model, F.mse_loss)
    sx, sy, qx, qy = data

    def looped() -> torch.Tensor:
        params = params_of(model)
        return torch.stack([
            loss_fn(adapt(loss_fn, params, sx[t], sy[t], steps=steps, lr=0.01), qx[t], qy[t])
            for t in range(sx.shape[0])]).mean()

    return {
        "hand-written loop over tasks": lambda: hand_written_maml(model, data, steps, 0.01),
        "adapt, Python loop over tasks": looped,
        "maml_loss (vmap over tasks)": lambda: maml_loss(loss_fn, params_of(model), *data,
                                                         steps=steps, lr=0.01),
    }


def maml_rows(repeats: int) -> list[dict[str, Any]]:
    """MAML meta-gradient on 25 sinusoids with 1 and 5 inner steps."""
    gen = seed_everything(0)
    model = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                          nn.Linear(40, 1))
    data = sinusoid_tasks(25, gen)
    return [row for steps in (1, 5) for row in ratio_rows(
        f"MAML, 25 tasks, {steps} inner step(s)", maml_cases(model, data, steps), repeats)]


def oml_cases(net: OMLNet, ep: Episode, lr: float) -> dict[str, Callable[[], torch.Tensor]]:
    """OML's online meta-loss two ways: Python loop over episodes, vmap."""
    loss_fn = functional_loss(net.fast, F.mse_loss)

    def looped() -> torch.Tensor:
        out_x, out_y = ep.outer()
        traj_ctx, out_ctx = batched_context(net, ep.traj_x, 3), batched_context(net, out_x, 2)
        losses = []
        for e in range(ep.keep.shape[0]):
            fast = reset_rows(params_of(net.fast), net.head_keys, ep.keep[e])
            fast = adapt_online(loss_fn, fast, tuple(c[e] for c in traj_ctx), ep.traj_y[e], lr=lr)
            losses.append(loss_fn(fast, tuple(c[e] for c in out_ctx), out_y[e]))
        return torch.stack(losses).mean()

    return {
        "adapt_online, Python loop over episodes": looped,
        "online_meta_loss (vmap over episodes)": lambda: online_meta_loss(net, ep, F.mse_loss,
                                                                          lr=lr),
    }


def oml_rows(repeats: int) -> list[dict[str, Any]]:
    """OML's online meta-gradient on incremental sine waves, 4 and 16 episodes."""
    seed_everything(0)
    bench = sine_benchmark(n_pretrain_episodes=1)
    net = oml_mlp(bench.input_shape, 1, hidden=64, rln_layers=2)
    return [row for n in (4, 16) for row in ratio_rows(
        f"OML sine, {n} episodes x 50 steps",
        oml_cases(net, bench.sample(torch.Generator().manual_seed(0), n), bench.online_lr),
        repeats)]


def ratio_rows(problem: str, cases: dict[str, Callable[[], torch.Tensor]], repeats: int
               ) -> list[dict[str, Any]]:
    """Time each case; the first is the baseline of the ratio."""
    rows = []
    for method, fn in cases.items():
        seconds, _ = best_of(lambda fn=fn: timed(fn, repeats))
        rows.append({"problem": problem, "method": method, "seconds": seconds})
    for row in rows:
        row["ratio"] = row["seconds"] / rows[0]["seconds"]
    return rows


def main(repeats: int = 10) -> list[dict[str, Any]]:
    """Run every case, print the markdown table, return its rows."""
    torch.set_num_threads(1)
    rows = maml_rows(repeats) + oml_rows(max(1, repeats // 5))
    print(markdown_table(rows, ["problem", "method", "seconds", "ratio"]))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    main(parser.parse_args().repeats)
