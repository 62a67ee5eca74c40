"""Overhead of the curriculum samplers beside a plain `torch.randperm` loop.

Run: `.venv/bin/python benchmarks/curriculum.py [--n 20000] [--epochs 3] [--passes 100]`.
Prints two markdown tables and returns their rows:

1. the order of one pass alone (N indices): randperm vs `CurriculumSampler.indices()` vs
   iterating the sampler as a DataLoader would (Python ints);
2. a training loop (MLP 784-256-10, Adam, batch 128, index slicing of in-memory tensors) whose
   passes come from randperm (hand-written baseline), the sampler, the sampler with a loss
   re-scoring pass every epoch, the library's `train_curve`, and a DataLoader over a
   TensorDataset with the sampler. Every curriculum row uses c0 = 1 (the whole data each pass),
   so all rows train on the same number of examples and the ratio is pure overhead.
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
from torch.utils.data import DataLoader, TensorDataset

from lifelong.curriculum.pacing import Linear
from lifelong.curriculum.samplers import CurriculumSampler, PacedCurriculum
from lifelong.curriculum.scorers import LossScorer
from lifelong.curriculum.train import curriculum_order, train_curve
from lifelong.data.sources import SourceData

BATCH, HIDDEN, LR = 128, 256, 1e-3


def problem(n: int, seed: int = 0) -> tuple[SourceData, nn.Module]:
    """Random 28×28 inputs with 10 labels, and a seeded MLP."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)
    data = SourceData("random", x, y, x[:1000], y[:1000], tuple(map(str, range(10))))
    torch.manual_seed(seed)
    return data, nn.Sequential(nn.Flatten(), nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))


def hand_loop(data: SourceData, model: nn.Module, epochs: int,
              next_order: Callable[[nn.Module, int], torch.Tensor]) -> float:
    """The minimal loop: one order per epoch, slices of `BATCH`, CE, Adam; seconds taken."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = next_order(model, epoch)
        model.train()
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def dataloader_loop(data: SourceData, model: nn.Module, epochs: int, sampler: CurriculumSampler) -> float:
    """The same loop through a DataLoader over a TensorDataset with the curriculum sampler."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=BATCH, sampler=sampler)
    start = time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        model.train()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def pass_rows(n: int, passes: int) -> list[dict[str, Any]]:
    """Seconds per pass order of N indices."""
    scores = torch.rand(n, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)
    sampler = CurriculumSampler(scores, Linear(c0=0.5), total=1, generator=gen)
    sampler.set_time(0.5)  # 75% of the data allowed
    cases = {
        "randperm(N)": lambda: torch.randperm(n, generator=gen),
        "CurriculumSampler.indices()": sampler.indices,
        "list(CurriculumSampler) (DataLoader style)": lambda: list(sampler),
        "CurriculumSampler construction (sort)": lambda: CurriculumSampler(scores, Linear(), 1),
    }
    rows = []
    for name, fn in cases.items():
        def timed(fn: Callable[[], Any] = fn) -> tuple[float, None]:
            start = time.perf_counter()
            for _ in range(passes):
                fn()
            return (time.perf_counter() - start) / passes, None

        rows.append({"method": name, "seconds": best_of(timed)[0]})
    for row in rows:
        row["ratio"] = row["seconds"] / rows[0]["seconds"]
    return rows


def timed_helper(data: SourceData, model: nn.Module, epochs: int, gen: torch.Generator) -> float:
    """The library's `train_curve` with a once-scored curriculum at c0 = 1."""
    curriculum = PacedCurriculum(LossScorer(), Linear(c0=1.0), 1, rescore_every=0)
    start = time.perf_counter()
    train_curve(model, data, curriculum_order(curriculum, data, gen), budget=epochs * len(data.train_y),
                batch_size=BATCH, lr=LR, n_evals=1)
    return time.perf_counter() - start


def loop_rows(n: int, epochs: int) -> list[dict[str, Any]]:
    """Seconds of a whole training loop with each source of pass orders."""
    scores = torch.rand(n, generator=torch.Generator().manual_seed(1))

    def sampler(gen: torch.Generator) -> CurriculumSampler:
        return CurriculumSampler(scores, Linear(c0=1.0), total=1, generator=gen)

    def rescoring(data: SourceData, model: nn.Module, gen: torch.Generator) -> float:
        curriculum = PacedCurriculum(LossScorer(), Linear(c0=1.0), total=1, rescore_every=1)
        return hand_loop(data, model, epochs,
                         lambda m, e: curriculum.order(e, m, data.train_x, data.train_y, gen))

    cases: dict[str, Callable[[SourceData, nn.Module, torch.Generator], float]] = {
        "randperm loop (hand-written)":
            lambda d, m, g: hand_loop(d, m, epochs, lambda _m, _e: torch.randperm(n, generator=g)),
        "sampler.indices() loop": lambda d, m, g: hand_loop(d, m, epochs, lambda _m, _e: sampler(g).indices()),
        "loss re-scoring every epoch": rescoring,
        "train_curve (library helper)": lambda d, m, g: timed_helper(d, m, epochs, g),
        "DataLoader + CurriculumSampler": lambda d, m, g: dataloader_loop(d, m, epochs, sampler(g)),
    }
    cases["randperm loop (hand-written)"](*problem(n), torch.Generator())  # warm-up, untimed
    rows = []
    for name, case in cases.items():
        def run(case: Callable[[SourceData, nn.Module, torch.Generator], float] = case) -> tuple[float, None]:
            return case(*problem(n), torch.Generator().manual_seed(0)), None

        rows.append({"method": name, "seconds": best_of(run)[0]})
    for row in rows:
        row["ratio"] = row["seconds"] / rows[0]["seconds"]
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print both tables; return their rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--passes", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    passes = pass_rows(args.n, args.passes)
    print(f"\nOne pass order over N = {args.n} (seconds per pass, best of 3)\n")
    print(markdown_table([{**r, "seconds": f"{r['seconds']:.2e}"} for r in passes], ["method", "seconds", "ratio"]))
    loops = loop_rows(args.n, args.epochs)
    print(f"\nTraining loop, N = {args.n}, {args.epochs} epochs, batch {BATCH} (seconds, best of 3)\n")
    print(markdown_table(loops, ["method", "seconds", "ratio"]))
    return passes + loops


if __name__ == "__main__":
    main()
