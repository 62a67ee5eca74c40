"""Every registered weighting, by name: building, state round trips, and learning on real data."""

from __future__ import annotations

import functools
import io

import pytest
import torch
from torch import nn

from lifelong.core.errors import ShapeMismatchError
from lifelong.core.registries import AGGREGATORS, WEIGHTINGS
from lifelong.grad import jacobian, write_grad
from lifelong.multitask.weighting import GradientWeighting, LossWeighting, build_weighting

ALL = WEIGHTINGS.names()
# keywords some weightings need for n tasks
NEEDS = {"constant": lambda n: {"weights": [1.0] * n}}


def _build(name: str, n_tasks: int, **kwargs: object) -> nn.Module:
    """build_weighting(name, n_tasks, **kwargs) plus what the weighting needs (see NEEDS)."""
    return build_weighting(name, n_tasks, **(NEEDS[name](n_tasks) if name in NEEDS else {}), **kwargs)


@pytest.mark.parametrize(("alias", "canonical"), [
    ("EW", "uniform"), ("UW", "uncertainty"), ("DWA", "dwa"), ("GradNorm", "gradnorm"),
    ("RLW", "rlw"), ("GLS", "gls"), ("IMTL-L", "imtl_l"), ("PCGrad", "pcgrad"), ("MGDA", "mgda"),
    ("CAGrad", "cagrad"), ("IMTLG", "imtl_g"), ("Nash_MTL", "nash_mtl"), ("NashMTL", "nash_mtl"),
    ("Aligned_MTL", "aligned_mtl"), ("GradVac", "gradvac"), ("GradDrop", "graddrop"),
    ("UPGrad", "upgrad"), ("DualProj", "dualproj"), ("Random", "rgw"), ("ConFIG", "config"),
    ("FairGrad", "fairgrad"), ("MoDo", "modo"), ("SDMGrad", "sdmgrad"),
    ("STCH", "stch"), ("FAMO", "famo"),
    ("DB_MTL", "db_mtl"), ("DB-MTL", "db_mtl"), ("MoCo", "moco"), ("IMTL", "imtl"),
    ("Constant", "constant"), ("Krum", "krum"), ("TrimmedMean", "trimmed_mean"), ("CRMOGM", "cr_mogm"),
    ("CR-MOGM", "cr_mogm"), ("ExcessMTL", "excess_mtl"),
])
def test_names_users_bring_resolve(alias: str, canonical: str) -> None:
    assert WEIGHTINGS.canonical(alias) == canonical


def test_both_kinds_build_from_one_name() -> None:
    loss, grad = build_weighting("uncertainty", 3), build_weighting("pcgrad", 3)
    assert isinstance(loss, LossWeighting) and loss.kind == "loss"
    assert isinstance(grad, GradientWeighting) and grad.kind == "gradient"
    assert set(AGGREGATORS.names()) <= set(ALL)
    for name in ALL:
        assert WEIGHTINGS.meta(name)["kind"] == _build(name, 3).kind


@pytest.mark.parametrize(("name", "kwargs", "why"), [
    ("constant", {"weights": [1.0, 2.0]}, "2 weights .* for 3 tasks"),
    ("krum", {}, "needs k >= f \\+ 3 = 3 tasks; got k = 2"),
    ("trimmed_mean", {"trim_number": 1}, "needs k > 2b = 2 tasks; got k = 2"),
])
def test_an_aggregator_that_cannot_work_with_this_many_tasks_is_refused_when_built(name, kwargs, why) -> None:
    from lifelong.core.errors import IncompatibleError

    with pytest.raises((ShapeMismatchError, IncompatibleError), match=why):
        build_weighting(name, 3 if name == "constant" else 2, **kwargs)


def test_gradient_weighting_passes_keywords_to_its_aggregator() -> None:
    w = build_weighting("cagrad", 2, c=0.0)
    J = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    torch.testing.assert_close(w.aggregate(J), J.mean(0) / 1.0)  # c = 0: the mean (÷ 1 + 0²)
    torch.testing.assert_close(w.weights, torch.full((2,), 0.5))
    with pytest.raises(ShapeMismatchError, match="3 task rows .* built for 2 tasks"):
        w.aggregate(torch.ones(3, 2))


def _steps(name: str, n: int, seed: int) -> list[tuple]:
    """n inputs for `name`: (losses, shared) for loss weightings, a Jacobian for the others."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(5, generator=gen, requires_grad=True)
    out = []
    for _ in range(n):
        a = torch.randn(3, 5, generator=gen)
        out.append(((a @ p) ** 2 + 0.1, [p]))
    return out


def _run(weighting: nn.Module, inputs: list[tuple]) -> list[torch.Tensor]:
    results = []
    for losses, shared in inputs:
        if weighting.kind == "loss":
            results.append(weighting.combine(losses, shared=shared).detach())
            if getattr(weighting, "needs_losses_after_step", False):  # FAMO: any positive losses
                weighting.after_step(losses.detach().sqrt())
        else:
            J = jacobian(losses, shared, retain_graph=True)
            J = J.expand(weighting.samples, *J.shape) if weighting.samples > 1 else J
            results.append(weighting.aggregate(J, losses.detach()))
        results.append(weighting.weights.clone())
        weighting.end_epoch(losses.detach())
    return results


@pytest.mark.parametrize("name", ALL)
def test_state_dict_resumes_bit_exactly(name: str) -> None:
    first = _build(name, 3)
    _run(first, _steps(name, 3, seed=0))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    later = _steps(name, 3, seed=1)
    expected = _run(first, later)
    second = _build(name, 3)
    second.load_state_dict(state)
    for got, want in zip(_run(second, later), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, ...]:
    from lifelong.data.sources import load_source

    d = load_source("digits")
    return d.train_x, d.train_y, d.test_x, d.test_y


def _train_two_tasks(weighting: nn.Module, steps: int = 150) -> tuple[float, float]:
    """A hand-written multi-task loop on digits: task 0 the digit, task 1 whether it is ≥ 5."""
    x, y, tx, ty = _digits()
    torch.manual_seed(0)
    shared = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
    heads = nn.ModuleList([nn.Linear(64, 10), nn.Linear(64, 2)])
    shared_params, head_params = list(shared.parameters()), list(heads.parameters())
    opt = torch.optim.Adam([*shared_params, *head_params, *weighting.parameters()], lr=0.01)
    gen = torch.Generator().manual_seed(0)
    epoch = []
    for step in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=gen)

        def task_losses(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = shared(x[rows])
            return z, torch.stack([nn.functional.cross_entropy(heads[0](z), y[rows]),
                                   nn.functional.cross_entropy(heads[1](z), (y[rows] >= 5).long())])

        z, losses = task_losses(idx)
        opt.zero_grad()
        if weighting.kind == "loss":
            weighting.combine(losses, shared=shared_params, step=step).backward()
        else:
            head_grads = torch.autograd.grad(losses.sum(), head_params, retain_graph=True)
            write_grad(head_params, torch.cat([g.reshape(-1) for g in head_grads]))
            if weighting.on_representation:  # MGDA-UB, GradDrop: aggregate ∂L/∂z, back-propagate it
                update = weighting.aggregate(jacobian(losses, [z], retain_graph=True))
                z.backward(update.view_as(z))
            elif weighting.samples > 1:  # independent Jacobians of disjoint parts of the batch
                J = torch.stack([jacobian(task_losses(part)[1], shared_params)
                                 for part in idx.tensor_split(weighting.samples)])
                write_grad(shared_params, weighting.aggregate(J, losses.detach()))
            else:
                write_grad(shared_params, weighting.aggregate(jacobian(losses, shared_params), losses.detach()))
        opt.step()
        if getattr(weighting, "needs_losses_after_step", False):  # FAMO: same batch, updated model
            with torch.no_grad():
                weighting.after_step(task_losses(idx)[1])
        epoch.append(losses.detach())
        if len(epoch) == 10:  # "epochs" of 10 steps for DWA
            weighting.end_epoch(torch.stack(epoch).mean(0))
            epoch = []
    with torch.no_grad():
        z = shared(tx)
        return (float((heads[0](z).argmax(1) == ty).float().mean()),
                float((heads[1](z).argmax(1) == (ty >= 5).long()).float().mean()))


# not krum: it needs k >= 3 tasks to score a gradient by its nearest others (tests/grad/test_grad_krum.py)
@pytest.mark.parametrize(("name", "kwargs"),
                         [(n, {}) for n in ALL if n != "krum"] + [("mgda", {"upper_bound": True})])
def test_every_weighting_learns_both_tasks_on_digits(name: str, kwargs: dict) -> None:
    digit, high = _train_two_tasks(_build(name, 2, **kwargs))
    # chance is 0.10 and ~0.50; every weighting reaches 0.96–0.97 on both here
    assert digit > 0.9, f"{name}: digit accuracy {digit:.3f}"
    assert high > 0.9, f"{name}: ≥5 accuracy {high:.3f}"
