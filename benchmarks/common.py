"""Shared pieces of the speed benchmarks: the standard stream, timing, and the hand-written loop.

Every benchmark times the library beside a minimal hand-written PyTorch loop doing the same work
(same data, model, optimiser, batch size, evaluation) in the same process, and reports the ratio.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lifelong.continual.engine import Engine  # noqa: E402
from lifelong.continual.strategies import build_strategy  # noqa: E402
from lifelong.core.allocator import keep_freed_memory  # noqa: E402
from lifelong.core.seeding import seed_everything  # noqa: E402
from lifelong.data.scenarios import build_benchmark  # noqa: E402
from lifelong.data.stream import Stream  # noqa: E402
from lifelong.models import build_model  # noqa: E402

keep_freed_memory()  # as the `lifelong` command does; the hand-written loops run in the same process

STANDARD = {"benchmark": "split-fashion-mnist", "setting": "class", "hidden": (400, 400),
            "lr": 1e-3, "batch_size": 128, "epochs": 1}


def standard_stream(benchmark: str = STANDARD["benchmark"], setting: str = STANDARD["setting"],
                    limit: tuple[int | None, int | None] | None = None) -> Stream:
    """Split Fashion-MNIST, class-incremental, 5 experiences of 2 classes (the issue's protocol)."""
    return build_benchmark(benchmark, setting, limit=limit)


def new_model(stream: Stream, seed: int = 0, head: str = "single", **kwargs: Any) -> torch.nn.Module:
    """MLP 784-400-400-10 (or `kwargs`), seeded."""
    torch.manual_seed(seed)
    kwargs.setdefault("hidden", STANDARD["hidden"])
    return build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), head=head, **kwargs)


def time_engine(stream: Stream, strategy: str, args: dict[str, Any] | None = None,
                seed: int = 0, **engine_kwargs: Any) -> tuple[float, list[list[float]]]:
    """Wall time (seconds) and accuracy matrix of `strategy` run through the engine."""
    generator = seed_everything(seed)
    model = new_model(stream, seed, head=engine_kwargs.pop("head", "single"))
    engine = Engine(model, build_strategy(strategy, args), epochs=STANDARD["epochs"],
                    batch_size=STANDARD["batch_size"], lr=STANDARD["lr"], generator=generator,
                    **engine_kwargs)
    start = time.perf_counter()
    matrix = engine.run(stream)
    return time.perf_counter() - start, matrix


def evaluate_all(model: torch.nn.Module, stream: Stream, batch: int = 2048) -> list[float]:
    """Hand-written evaluation: accuracy on every experience's test set."""
    model.eval()
    row = []
    with torch.no_grad():
        for exp in stream:
            correct = sum(int((model(exp.test_x[i:i + batch]).argmax(1) == exp.test_y[i:i + batch]).sum())
                          for i in range(0, len(exp.test_y), batch))
            row.append(correct / len(exp.test_y))
    return row


def hand_written_naive(stream: Stream, seed: int = 0,
                       extra_loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                       ) -> tuple[float, list[list[float]]]:
    """The minimal loop: Adam per experience, shuffled slices, CE, evaluation after each experience."""
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    model = new_model(stream, seed)
    start = time.perf_counter()
    matrix = [evaluate_all(model, stream)]
    for exp in stream:
        optimizer = torch.optim.Adam(model.parameters(), lr=STANDARD["lr"], fused=True)
        model.train()
        for _ in range(STANDARD["epochs"]):
            order = torch.randperm(len(exp.train_y), generator=generator)
            for i in range(0, len(order), STANDARD["batch_size"]):
                idx = order[i:i + STANDARD["batch_size"]]
                x, y = exp.train_x[idx], exp.train_y[idx]
                loss = F.cross_entropy(model(x), y)
                if extra_loss is not None:
                    loss = loss + extra_loss(model, x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        matrix.append(evaluate_all(model, stream))
    return time.perf_counter() - start, matrix


def best_of(fn: Callable[[], tuple[float, Any]], repeats: int = 3) -> tuple[float, Any]:
    """The fastest of `repeats` runs (timings are noisy on shared machines), with its result."""
    runs = [fn() for _ in range(repeats)]
    return min(runs, key=lambda r: r[0])


def microseconds(fns: dict[str, Callable[[], object]], calls: int = 100, rounds: int = 15) -> dict[str, float]:
    """µs per call of each fn: the fastest mean over `calls` calls in `rounds` rounds, the fns
    interleaved within each round so that load from other processes hits them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls * 1e6)
    return best


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows of dicts as a markdown table, floats with 3 decimals."""
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Peak resident memory above the level at start, sampled every 2 ms in a thread."""

    def start(self) -> PeakRSS:
        self.begin = self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_mib())

    def stop(self) -> float:
        """Stop sampling; the peak above the starting level, in MiB."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())
        return self.above_start

    __enter__ = start

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def above_start(self) -> float:
        return self.peak - self.begin
