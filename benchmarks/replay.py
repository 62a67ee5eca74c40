"""Speed and memory of the replay strategies beside naive, a hand-written replay loop and a
per-sample Python-list replay buffer (the slow way), on the standard stream (subsampled).

Run: `.venv/bin/python benchmarks/replay.py [--repeats 2] [--limit 10000] [--methods naive,replay]`
(about 1.5 minutes). Three tables:
1. every strategy through the engine, one run each in its own subprocess: seconds, ratio to naive,
   ACC, and memory — "train peak MiB" is the peak resident memory during training above the level
   before it (RSS sampled every 2 ms from /proc/self/statm in a thread, Linux), "process peak MiB"
   the subprocess's `ru_maxrss` (data loading included);
2. the replay loops side by side (engine ER, hand-written replay with a tensor buffer, the same
   loop with a per-sample Python-list buffer, naive), best of `repeats` interleaved rounds in one
   subprocess, with the ratios;
3. how much of the Python-list loop its buffer calls take (so the largest whole-loop speed-up any
   buffer could give, by Amdahl's law), then buffer operations alone (interleaved, fastest of 15
   rounds): one reservoir insertion of a 128-sample batch at stream positions 1k
   and 100k, and insert + sample per step for Fashion-MNIST rows (784 floats: copying dominates)
   and 16-float rows (per-sample Python overhead dominates).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import (
    STANDARD,
    PeakRSS,
    evaluate_all,
    markdown_table,
    microseconds,
    new_model,
    standard_stream,
    time_engine,
)

from lifelong.continual.buffers import ReservoirBuffer
from lifelong.continual.metrics import average_accuracy
from lifelong.core.seeding import seed_everything
from lifelong.data.stream import Stream

BUFFER = 500
ENGINE: dict[str, dict] = {
    "naive": {}, "replay": {"buffer_size": BUFFER}, "der": {"buffer_size": BUFFER},
    "der++": {"buffer_size": BUFFER}, "agem": {"patterns_per_experience": BUFFER // 5},
    "gem": {"patterns_per_experience": BUFFER // 5}, "icarl": {"memory_size": BUFFER}, "generative": {},
}


class TensorReservoir:
    """A hand-written tensor reservoir: preallocated, one vectorised draw per batch."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.seen, self.x, self.y = capacity, 0, None, None

    def add(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
        if self.x is None:
            self.x, self.y = x.new_empty((self.capacity, *x.shape[1:])), y.new_empty(self.capacity)
        pos = self.seen + torch.arange(len(y))
        slot = torch.where(pos < self.capacity, pos, (torch.rand(len(y), generator=gen) * (pos + 1)).long())
        keep = slot < self.capacity
        self.x[slot[keep]], self.y[slot[keep]] = x[keep], y[keep]
        self.seen += len(y)

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randperm(min(self.seen, self.capacity), generator=gen)[:n]
        return self.x[idx], self.y[idx]


class ListReservoir:
    """The slow way: Python lists, one random.randint per sample, torch.stack to sample."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.seen, self.x, self.y = capacity, 0, [], []

    def add(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
        for i in range(len(y)):
            self.seen += 1
            if len(self.x) < self.capacity:
                self.x.append(x[i])
                self.y.append(y[i])
            else:
                j = random.randint(0, self.seen - 1)
                if j < self.capacity:
                    self.x[j], self.y[j] = x[i], y[i]

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = random.sample(range(len(self.x)), min(n, len(self.x)))
        return torch.stack([self.x[i] for i in idx]), torch.stack([self.y[i] for i in idx])


class TimedBuffer:
    """Wraps a buffer and adds up the seconds spent in its `add` and `sample` calls."""

    def __init__(self, buffer: TensorReservoir | ListReservoir) -> None:
        self.buffer, self.seconds = buffer, 0.0

    @property
    def seen(self) -> int:
        return self.buffer.seen

    def add(self, *args: object) -> None:
        start = time.perf_counter()
        self.buffer.add(*args)
        self.seconds += time.perf_counter() - start

    def sample(self, *args: object) -> tuple[torch.Tensor, torch.Tensor]:
        start = time.perf_counter()
        out = self.buffer.sample(*args)
        self.seconds += time.perf_counter() - start
        return out


def hand_written_replay(stream: Stream, buffer: TensorReservoir | ListReservoir | TimedBuffer,
                        seed: int = 0) -> tuple[float, list[list[float]]]:
    """The minimal replay loop: each batch joined with 128 memory samples, reservoir after the step."""
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model, bs = new_model(stream, seed), STANDARD["batch_size"]
    start = time.perf_counter()
    matrix = [evaluate_all(model, stream)]
    for exp in stream:
        optimizer = torch.optim.Adam(model.parameters(), lr=STANDARD["lr"], fused=True)
        model.train()
        for _ in range(STANDARD["epochs"]):
            order = torch.randperm(len(exp.train_y), generator=gen)
            for i in range(0, len(order), bs):
                x, y = exp.train_x[order[i:i + bs]], exp.train_y[order[i:i + bs]]
                bx, by = x, y
                if buffer.seen:
                    mx, my = buffer.sample(len(y), gen)
                    bx, by = torch.cat([x, mx]), torch.cat([y, my])
                loss = F.cross_entropy(model(bx), by)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                buffer.add(x, y, gen)
        matrix.append(evaluate_all(model, stream))
    return time.perf_counter() - start, matrix


RUNNERS: dict[str, Callable[[Stream], tuple[float, list[list[float]]]]] = {
    **{name: (lambda s, n=name, a=args: time_engine(s, n, a)) for name, args in ENGINE.items()},
    "hand-written replay (tensor buffer)": lambda s: hand_written_replay(s, TensorReservoir(BUFFER)),
    "hand-written replay (Python list buffer)": lambda s: hand_written_replay(s, ListReservoir(BUFFER)),
}


CORE = ("naive", "replay", "hand-written replay (tensor buffer)", "hand-written replay (Python list buffer)")


def worker(method: str, limit: int) -> dict:
    """Run in a subprocess: one run's seconds, ACC, and peak memory in training."""
    torch.set_num_threads(1)
    stream = standard_stream(limit=(limit, 5_000))
    with PeakRSS() as mem:
        seconds, matrix = RUNNERS[method](stream)
    return {"method": method, "seconds": seconds, "ACC": average_accuracy(matrix),
            "train peak MiB": mem.above_start,
            "process peak MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ratio_worker(repeats: int, limit: int) -> dict[str, float]:
    """Run in a subprocess: best-of-`repeats` seconds of the replay loops, run in interleaved rounds
    so that load from other processes on a shared machine hits them alike."""
    torch.set_num_threads(1)
    stream = standard_stream(limit=(limit, 5_000))
    best = {m: float("inf") for m in CORE}
    for _ in range(repeats):
        for m in CORE:
            best[m] = min(best[m], RUNNERS[m](stream)[0])
    timed = TimedBuffer(ListReservoir(BUFFER))
    seconds, _ = hand_written_replay(stream, timed)
    return {"best": best, "Python-list buffer share": timed.seconds / seconds}


def batch_of(n: int, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return {"x": torch.rand(n, *shape), "y": torch.randint(0, 10, (n,)), "t": torch.zeros(n, dtype=torch.long)}


def insert_at(position: int, gen: torch.Generator) -> Callable[[], None]:
    """One insertion of a 128-sample batch into a 500-row reservoir that has seen `position`."""
    buffer = ReservoirBuffer(BUFFER)
    while buffer.seen < position:
        buffer.add(batch_of(min(10_000, position - buffer.seen), (1, 28, 28)), gen)
    rows = batch_of(128, (1, 28, 28))

    def add() -> None:
        buffer.add(rows, gen)
        buffer.seen = position  # keep inserting at the same stream position

    return add


def buffer_rows() -> list[dict]:
    """Buffer operations alone: insertion cost vs stream position, and insert + sample per step."""
    gen = torch.Generator().manual_seed(0)
    inserts = microseconds({"early": insert_at(1_000, gen), "late": insert_at(100_000, gen)})
    early, late = inserts["early"], inserts["late"]
    out = [{"operation": "insert 128 at position 1k (µs)", "value": early},
           {"operation": "insert 128 at position 100k (µs)", "value": late},
           {"operation": "insert cost ratio 100k / 1k", "value": late / early}]
    for label, shape in (("Fashion-MNIST rows", (1, 28, 28)), ("16-float rows", (16,))):
        rows = {k: v for k, v in batch_of(128, shape).items() if k in ("x", "y")}  # what the baselines store
        ours, hand, slow = ReservoirBuffer(BUFFER), TensorReservoir(BUFFER), ListReservoir(BUFFER)
        for buf in (ours, hand, slow):  # fill, then time at stream positions past the capacity
            for _ in range(40):
                (buf.add(rows, gen) if buf is ours else buf.add(rows["x"], rows["y"], gen))
        timed = microseconds({
            "lifelong": lambda b=ours, r=rows: (b.add(r, gen), b.sample(128, gen)),
            "hand-written tensor": lambda b=hand, r=rows: (b.add(r["x"], r["y"], gen), b.sample(128, gen)),
            "Python list": lambda b=slow, r=rows: (b.add(r["x"], r["y"], gen), b.sample(128, gen)),
        })
        for name, us in timed.items():
            out.append({"operation": f"{label}: insert + sample 128, {name} buffer (µs/step)", "value": us})
        out.append({"operation": f"{label}: Python list / lifelong", "value": timed["Python list"] / timed["lifelong"]})
    return out


def _subprocess(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(methods: list[str] | None = None, repeats: int = 2, limit: int = 10_000) -> list[dict]:
    """Time every method in its own subprocess, then the replay loops side by side; print the tables."""
    torch.set_num_threads(1)
    rows = [_subprocess("--worker", m, "--limit", str(limit)) for m in methods or list(RUNNERS)]
    naive = next((r["seconds"] for r in rows if r["method"] == "naive"), None)
    for r in rows:
        r["vs naive"] = r["seconds"] / naive if naive else ""
    print(markdown_table(rows, ["method", "seconds", "vs naive", "ACC", "train peak MiB", "process peak MiB"]))
    measured = _subprocess("--ratios", "--repeats", str(repeats), "--limit", str(limit))
    best, share = measured["best"], measured["Python-list buffer share"]
    hand, slow = best[CORE[2]], best[CORE[3]]
    ratios = [{"method": m, "best seconds": t, "vs hand-written tensor replay": t / hand,
               "Python-list replay / this": slow / t} for m, t in best.items()]
    print()
    print(markdown_table(ratios, ["method", "best seconds", "vs hand-written tensor replay",
                                  "Python-list replay / this"]))
    # Amdahl: a buffer costing nothing speeds the Python-list loop up by at most 1 / (1 - share)
    ops = [{"operation": "Python-list replay loop: share of its time in buffer calls", "value": share},
           {"operation": "Python-list replay loop: largest speed-up any buffer can give", "value": 1 / (1 - share)},
           *buffer_rows()]
    print()
    print(markdown_table(ops, ["operation", "value"]))
    return rows + ratios + ops


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, default=10_000, help="training samples kept (of 60000)")
    parser.add_argument("--methods", default=",".join(RUNNERS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--ratios", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.worker:
        print(json.dumps(worker(ns.worker, ns.limit)))
    elif ns.ratios:
        print(json.dumps(ratio_worker(ns.repeats, ns.limit)))
    else:
        main(ns.methods.split(","), ns.repeats, ns.limit)
