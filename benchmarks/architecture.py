"""Speed, size and memory of the architecture strategies (progressive, packnet, hat, adapters, lora, den).

Each strategy runs through the engine on Split Fashion-MNIST, task-incremental (the setting these
methods are built for; 10000/2000 samples by default, MLP 784-400-400-10, Adam 1e-3, batch 128,
1 epoch), beside the engine's naive run, the minimal hand-written naive loop of common.py, and a
hand-written PackNet loop (gradient masks, magnitude pruning, the way a user would write it;
the engine's PackNet also retrains an epoch after pruning, so a row without retraining is
compared with it). Hand-written loops train and evaluate without the task mask (their ACC is
class-incremental), which changes no cost that matters.
Per task it records the parameter count, the trainable parameters, the model's training memory
(parameters + gradients + Adam moments of the trainable ones, float32) and the peak resident
memory while learning the task, above the level before it (sampled; see common.PeakRSS).
Times are CPU seconds of this process (the machine is shared), wall time beside.

Run: `.venv/bin/python benchmarks/architecture.py [--repeats 1] [--strategies progressive,hat]`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from common import PeakRSS, hand_written_naive, markdown_table, new_model, standard_stream
from regularisation import Hooks, hand_written

from lifelong.continual.engine import Engine
from lifelong.continual.metrics import average_accuracy
from lifelong.continual.plugin import Context, Plugin
from lifelong.continual.plugins.packnet import assign_kept
from lifelong.continual.strategies import build_strategy
from lifelong.core.seeding import seed_everything

# row label → (strategy, arguments); "packnet-no-retrain" does the hand-written loop's work
DEFAULT: dict[str, tuple[str, dict]] = {
    "naive": ("naive", {}), "progressive": ("progressive", {}), "packnet": ("packnet", {}),
    "packnet-no-retrain": ("packnet", {"retrain_epochs": 0}), "hat": ("hat", {}),
    "adapters": ("adapters", {}), "lora": ("lora", {}), "den": ("den", {}),
}
LIMIT = (10_000, 2_000)
MIB = 2 ** 20


class Meter(Plugin):
    """Records per task: parameters, trainable parameters, model training memory, peak RSS."""

    name = "meter"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def before_experience(self, ctx: Context) -> None:
        trainable = sum(p.numel() for p in ctx.model.parameters() if p.requires_grad)
        self.rows.append({"trainable": trainable})
        self.memory = PeakRSS().start()

    def after_experience(self, ctx: Context) -> None:
        params = sum(p.numel() for p in ctx.model.parameters())
        self.rows[-1].update(params=params, model_mib=4 * (params + 3 * self.rows[-1]["trainable"]) / MIB,
                             peak_mib=self.memory.stop())


def run_engine(stream, strategy: str, args: dict, seed: int = 0) -> tuple[float, float, list, Meter]:
    """(CPU seconds, wall seconds, accuracy matrix, per-task meter) of `strategy` through the engine."""
    generator = seed_everything(seed)
    meter = Meter()
    engine = Engine(new_model(stream, seed), [*build_strategy(strategy, args), meter], epochs=1,
                    batch_size=128, lr=1e-3, generator=generator)
    cpu, wall = time.process_time(), time.perf_counter()
    matrix = engine.run(stream)
    return time.process_time() - cpu, time.perf_counter() - wall, matrix, meter


class HandPackNet(Hooks):
    """PackNet by hand: owners per weight matrix, masked gradients, magnitude pruning after each task."""

    def __init__(self, prune: float = 0.75) -> None:
        self.prune, self.owners, self.task = prune, {}, 0

    def before(self, model, index, stream) -> None:
        self.task = index + 1
        if not self.owners:
            self.owners = {n: torch.zeros_like(p, dtype=torch.uint8) for n, p in model.named_parameters()
                           if p.dim() > 1 and n.startswith("backbone")}

    def after_backward(self, model) -> None:
        for n, p in model.named_parameters():
            if n in self.owners:
                p.grad[self.owners[n] != 0] = 0

    def after(self, model, exp, gen) -> None:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in self.owners:
                    self.owners[n] = assign_kept(p, self.owners[n], self.task, self.prune)
                    p[self.owners[n] == 0] = 0


def timed(fn) -> tuple[float, float, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main(strategies: dict[str, tuple[str, dict]] | None = None, repeats: int = 1) -> list[dict]:
    """Time each strategy and the hand-written loops; print the tables and return the rows."""
    strategies = strategies or DEFAULT
    torch.set_num_threads(1)  # CPU seconds of one thread: comparable on a shared machine
    stream = standard_stream(setting="task", limit=LIMIT)
    hand_written_naive(stream[:1])  # warm-up: the first loop of a process pays one-off costs
    best = lambda runs: min(runs, key=lambda r: r[0])  # noqa: E731
    hand_cpu, hand_wall, (_, hand_m) = best([timed(lambda: hand_written_naive(stream)) for _ in range(repeats)])
    pack_cpu, pack_wall, (_, pack_m) = best([timed(lambda: hand_written(stream, HandPackNet()))
                                             for _ in range(repeats)])
    rows = [{"method": "hand-written naive loop", "cpu s": hand_cpu, "wall s": hand_wall, "vs hand-written": 1.0,
             "ACC": average_accuracy(hand_m)},
            {"method": "hand-written packnet loop", "cpu s": pack_cpu, "wall s": pack_wall,
             "vs hand-written": pack_cpu / hand_cpu, "ACC": average_accuracy(pack_m)}]
    per_task, naive_cpu = [], None
    for label, (name, args) in strategies.items():
        cpu, wall, matrix, meter = best([run_engine(stream, name, args) for _ in range(repeats)])
        naive_cpu = cpu if name == "naive" else naive_cpu
        rows.append({"method": label, "cpu s": cpu, "wall s": wall, "vs naive": cpu / naive_cpu if naive_cpu else "",
                     "vs hand-written": cpu / (pack_cpu if name == "packnet" else hand_cpu),
                     "ACC": average_accuracy(matrix), "params": meter.rows[-1]["params"]})
        if label == name:
            per_task += [{"method": name, "task": i, **r} for i, r in enumerate(meter.rows)]
    print(markdown_table(rows, ["method", "cpu s", "wall s", "vs naive", "vs hand-written", "ACC", "params"]))
    print()
    print(markdown_table(per_task, ["method", "task", "params", "trainable", "model_mib", "peak_mib"]))
    return rows + per_task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--strategies", default=",".join(DEFAULT))
    ns = parser.parse_args()
    main({n: DEFAULT.get(n, (n, {})) for n in ns.strategies.split(",")}, ns.repeats)
