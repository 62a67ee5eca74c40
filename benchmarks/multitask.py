"""Per-step time of the multi-task engine beside a minimal hand-written loop (HPS + uniform).

Run: `.venv/bin/python benchmarks/multitask.py [--n-train 4096] [--epochs 1]`. Same data
(Multi-Fashion subsample), model (MLP trunk 1296-256-256, one linear head per task), Adam,
batch 128 and shuffling in both; the engine's time excludes its per-epoch evaluation. Extra
rows show the engine with PCGrad (one batched Jacobian per step) and with MMoE (8 experts).
Prints a markdown table and returns its rows.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.nn.functional as F
from common import best_of, markdown_table

from lifelong.data.multitask import MultiTaskData, load_benchmark
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.presets import build_default
from lifelong.multitask.weighting import build_weighting

WIDTH, BATCH, LR = 256, 128, 1e-3


def hand_written(data: MultiTaskData, epochs: int) -> tuple[float, int]:
    """The baseline loop: sum of the tasks' cross-entropies, backward, Adam step."""
    torch.manual_seed(0)
    model = build_default("hps", data, width=WIDTH)
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    x = data.splits["left"].train_x
    ys = {t: data.splits[t].train_y for t in data.task_names}
    gen = torch.Generator().manual_seed(0)
    steps = 0
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], BATCH):
            idx = order[i:i + BATCH]
            out = model(x[idx])
            loss = sum(F.cross_entropy(out[t], ys[t][idx]) for t in data.task_names)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return time.perf_counter() - start, steps


def engine(data: MultiTaskData, epochs: int, arch: str, weighting: str) -> tuple[float, int]:
    """Training time of the engine (evaluation excluded) and its number of steps."""
    torch.manual_seed(0)
    model = build_default(arch, data, width=WIDTH)
    trainer = MultiTaskTrainer(model, build_weighting(weighting, 2), data,
                               TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR),
                               torch.Generator().manual_seed(0))
    trainer.fit()
    return sum(h["train_seconds"] for h in trainer.history), trainer.step


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Time every row, print the markdown table and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # stable timings on a shared machine
    data = load_benchmark("multi-fashion", n_train=args.n_train, n_test=256)
    cases = [("hand-written HPS + uniform", lambda: hand_written(data, args.epochs)),
             ("engine HPS + uniform", lambda: engine(data, args.epochs, "hps", "uniform")),
             ("engine HPS + pcgrad", lambda: engine(data, args.epochs, "hps", "pcgrad")),
             ("engine MMoE + uniform", lambda: engine(data, args.epochs, "mmoe", "uniform"))]
    rows = []
    for name, fn in cases:
        seconds, steps = best_of(fn)
        rows.append({"method": name, "seconds": seconds, "ms_per_step": 1000 * seconds / steps})
    base = rows[0]["seconds"]
    for row in rows:
        row["ratio"] = row["seconds"] / base
    print(markdown_table(rows, ["method", "seconds", "ms_per_step", "ratio"]))
    return rows


if __name__ == "__main__":
    main()
