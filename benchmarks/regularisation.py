"""Speed of the regularisation strategies (EWC, online EWC, SI, MAS, LwF) through the engine.

Each strategy runs on the standard stream (Split Fashion-MNIST class-IL, MLP 784-400-400-10,
Adam 1e-3, batch 128, 1 epoch) through the engine, beside the engine's naive run and beside a
minimal hand-written loop doing the same work the way a user would write it (per-parameter
penalties, `copy.deepcopy` of the old model, a Fisher from `vmap(grad)`). Times are CPU seconds
of this process (`time.process_time`: the machine is shared, wall time follows other people's
load) with the wall time beside; ratios use CPU time, the fastest of `--repeats` interleaved
rounds. Torch runs single-threaded.

Run: `.venv/bin/python benchmarks/regularisation.py [--repeats 1] [--strategies ewc,si]`.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from common import STANDARD, evaluate_all, markdown_table, new_model, standard_stream, time_engine
from torch.func import functional_call, grad, vmap

from lifelong.continual.metrics import average_accuracy
from lifelong.core.seeding import seed_everything
from lifelong.data.stream import Experience, Stream

SAMPLES, CHUNK = 128, 16  # the Fisher / sensitivity budget, as the plugins' defaults
DEFAULT: dict[str, dict] = {"ewc": {}, "online_ewc": {}, "si": {}, "mas": {}, "lwf": {}}


class Hooks:
    """What a hand-written strategy adds to the loop; every hook is a no-op here."""

    def before(self, model: torch.nn.Module, index: int, stream: Stream) -> None: ...
    def penalty(self, model: torch.nn.Module, x: torch.Tensor, out: torch.Tensor) -> Any:
        return 0.0
    def after_backward(self, model: torch.nn.Module) -> None: ...
    def after_step(self, model: torch.nn.Module) -> None: ...
    def after(self, model: torch.nn.Module, exp: Experience, gen: torch.Generator) -> None: ...


def hand_written(stream: Stream, hooks: Hooks, seed: int = 0) -> tuple[float, list[list[float]]]:
    """The minimal loop of common.hand_written_naive with the hooks a strategy needs."""
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model = new_model(stream, seed)
    start = time.perf_counter()
    matrix = [evaluate_all(model, stream)]
    for i, exp in enumerate(stream):
        hooks.before(model, i, stream)
        optimizer = torch.optim.Adam(model.parameters(), lr=STANDARD["lr"], fused=True)
        model.train()
        for _ in range(STANDARD["epochs"]):
            order = torch.randperm(len(exp.train_y), generator=gen)
            for s in range(0, len(order), STANDARD["batch_size"]):
                idx = order[s:s + STANDARD["batch_size"]]
                x, y = exp.train_x[idx], exp.train_y[idx]
                out = model(x)
                loss = F.cross_entropy(out, y) + hooks.penalty(model, x, out)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                hooks.after_backward(model)
                optimizer.step()
                hooks.after_step(model)
        hooks.after(model, exp, gen)
        matrix.append(evaluate_all(model, stream))
    return time.perf_counter() - start, matrix


def per_sample(model: torch.nn.Module, loss: Callable, x: torch.Tensor, *extra: torch.Tensor,
               reduce: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean over samples of reduce(per-sample gradient), by vmap(grad) in chunks."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    fn = vmap(grad(lambda p, xi, *ei: loss(functional_call(model, p, (xi[None],)), *(e[None] for e in ei))),
              in_dims=(None, 0, *(0,) * len(extra)))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    model.eval()
    for s in range(0, len(x), CHUNK):
        g = fn(params, x[s:s + CHUNK], *(e[s:s + CHUNK] for e in extra))
        for n in total:
            total[n] += reduce(g[n]).sum(0)
    return {n: v / len(x) for n, v in total.items()}


class Quadratic(Hooks):
    """Σ_tasks Σ_params strength · Ω (p − p*)², one term per parameter and task."""

    def __init__(self, strength: float) -> None:
        self.strength, self.tasks = strength, []

    def penalty(self, model, x, out):
        return self.strength * sum((w[n] * (p - a[n]).square()).sum() for w, a in self.tasks
                                   for n, p in model.named_parameters())

    def anchor(self, model):
        return {n: p.detach().clone() for n, p in model.named_parameters()}


class HandEWC(Quadratic):
    def __init__(self, lam: float = 10.0, online: bool = False, gamma: float = 1.0) -> None:
        super().__init__(lam / 2)
        self.online, self.gamma = online, gamma

    def after(self, model, exp, gen):
        idx = torch.randperm(len(exp.train_y), generator=gen)[:SAMPLES]
        x = exp.train_x[idx]
        with torch.no_grad():
            y = torch.multinomial(model.eval()(x).softmax(1), 1, generator=gen)[:, 0]
        fisher = per_sample(model, F.cross_entropy, x, y, reduce=torch.square)
        if self.online and self.tasks:
            fisher = {n: self.gamma * self.tasks[0][0][n] + f for n, f in fisher.items()}
            self.tasks = []
        self.tasks.append((fisher, self.anchor(model)))


class HandMAS(Quadratic):
    def after(self, model, exp, gen):
        x = exp.train_x[torch.randperm(len(exp.train_y), generator=gen)[:SAMPLES]]
        omega = per_sample(model, lambda out: out.square().sum(), x, reduce=torch.abs)
        if self.tasks:
            omega = {n: self.tasks[0][0][n] + o for n, o in omega.items()}
        self.tasks = [(omega, self.anchor(model))]


class HandSI(Quadratic):
    def __init__(self, c: float = 0.1, xi: float = 0.1) -> None:
        super().__init__(c)
        self.xi, self.big_omega = xi, None

    def before(self, model, index, stream):
        self.start = self.anchor(model)
        self.omega = {n: torch.zeros_like(p) for n, p in model.named_parameters()}

    def after_backward(self, model):
        self.grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        self.prev = self.anchor(model)

    def after_step(self, model):
        for n, p in model.named_parameters():
            self.omega[n] -= self.grads[n] * (p.detach() - self.prev[n])

    def after(self, model, exp, gen):
        now = self.anchor(model)
        new = {n: self.omega[n] / ((now[n] - self.start[n]).square() + self.xi) for n in now}
        self.big_omega = new if self.big_omega is None else {n: self.big_omega[n] + new[n] for n in new}
        self.tasks = [(self.big_omega, now)]


class HandLwF(Hooks):
    def __init__(self, alpha: float = 1.0, temperature: float = 2.0) -> None:
        self.alpha, self.temperature, self.old = alpha, temperature, None

    def before(self, model, index, stream):
        if index:
            self.old = copy.deepcopy(model).eval()
            self.classes = sorted({c for e in stream[:index] for c in e.classes})

    def penalty(self, model, x, out):
        if self.old is None:
            return 0.0
        with torch.no_grad():
            target = (self.old(x)[:, self.classes] / self.temperature).softmax(1)
        log_q = (out[:, self.classes] / self.temperature).log_softmax(1)
        return self.alpha * F.kl_div(log_q, target, reduction="batchmean")


HAND: dict[str, Callable[[], Hooks]] = {
    "naive": Hooks, "ewc": HandEWC, "online_ewc": lambda: HandEWC(online=True),
    "si": HandSI, "mas": lambda: HandMAS(1.0), "lwf": HandLwF,
}


def timed(fn: Callable[[], tuple[float, Any]]) -> tuple[float, float, Any]:
    """(CPU seconds, wall seconds, result) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    _, result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main(strategies: dict[str, dict] | None = None, repeats: int = 1) -> list[dict]:
    """Time naive and each strategy through the engine and hand-written; print the table."""
    strategies = strategies if strategies is not None else DEFAULT
    torch.set_num_threads(1)  # CPU time then measures the work, not idle spinning threads
    stream = standard_stream()
    hand_written(stream[:1], Hooks())  # warm-up: the first run of a process pays one-off costs
    runs: dict[tuple[str, str], tuple[float, float, Any]] = {}
    for _ in range(repeats):  # repeats interleave, so a change in the machine's load hits every method
        for name, args in {"naive": {}, **strategies}.items():
            for key, fn in (((name, "engine"), lambda n=name, a=args: time_engine(stream, n, a)),
                            ((name, "hand-written"), lambda n=name: hand_written(stream, HAND[n]()))):
                result = timed(fn)
                runs[key] = min(runs.get(key, result), result, key=lambda r: r[0])
    naive_cpu = runs["naive", "engine"][0]
    rows = []
    for (name, impl), (cpu, wall, matrix) in runs.items():
        rows.append({"method": name, "implementation": impl, "cpu s": cpu, "wall s": wall,
                     "vs engine naive": cpu / naive_cpu,
                     "engine / hand-written": cpu / runs[name, "hand-written"][0] if impl == "engine" else "",
                     "ACC": average_accuracy(matrix)})
    print(markdown_table(rows, ["method", "implementation", "cpu s", "wall s", "vs engine naive",
                                "engine / hand-written", "ACC"]))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--strategies", default=",".join(DEFAULT))
    ns = parser.parse_args()
    main({n: DEFAULT[n] for n in ns.strategies.split(",") if n in DEFAULT}, ns.repeats)
