"""Every registered weighting, by name: building, arguments and state round trips (learning on real
data, through the trainer: tests/multitask/test_mtl_engine.py)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.core.registries import AGGREGATORS, WEIGHTINGS
from lifelong.grad import jacobian
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
            # GradDrop reads the sign of the activations J was taken at: the parameter stands in (one sample)
            z = shared[0].detach().reshape(1, -1) if weighting.aggregator.needs_representation else None
            results.append(weighting.aggregate(J, losses.detach(), representation=z))
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


@pytest.mark.parametrize(("name", "kwargs", "why"), [
    ("constant", {"weights": ["a", "b", "c"]}, "weights must be a list of numbers"),
    ("krum", {"n_byzantine": "x"}, "n_byzantine must be an integer ≥ 0"),
    ("trimmed_mean", {"trim_number": 1.5}, "trim_number must be an integer ≥ 0"),
    ("cr_mogm", {"alpha": "x"}, "alpha must be a number"),
    ("moco", {"beta": "x"}, "beta must be a number"),
    ("sdmgrad", {"n_iter": 2.5}, "n_iter must be a positive integer"),
    ("modo", {"gamma": None}, "gamma must be a number"),
    ("excess_mtl", {"robust_step_size": float("nan")}, "robust_step_size must be finite"),
    ("db_mtl", {"beta": None}, "beta must be a number"),
    ("stch", {"preference": [1, "a", 2]}, "preference must be a list of numbers"),
    ("famo", {"lower_bounds": ["a"]}, "lower_bounds must be a list of numbers"),
    ("dwa", {"temperature": "x"}, "temperature must be a number"),
    ("dwa", {"temperature": 0}, "temperature must be a finite number > 0"),
    ("gradnorm", {"alpha": float("nan")}, "alpha must be a finite number ≥ 0"),
    ("rlw", {"generator": 3}, "generator must be a torch.Generator"),
    ("uncertainty", {"task_types": "regression"}, "task_types must be a list"),
    ("cagrad", {"c": "x"}, "cagrad: c must be a number"),
    ("cagrad", {"rescale": 2}, "cagrad: rescale must be true or false"),
    ("fairgrad", {"alpha": 0}, "fairgrad: alpha must be a finite number > 0"),
    ("graddrop", {"leak": 1.5}, r"graddrop: leak is a fraction in \[0, 1\]"),
    ("gradvac", {"beta": 0}, "gradvac: beta must be a finite number > 0"),
    ("mgda", {"max_iter": "many"}, "mgda: max_iter must be a positive integer"),
    ("mgda", {"upper_bound": "yes"}, "mgda: upper_bound must be true or false"),
    ("mgda", {"tol": float("nan")}, "mgda: tol must be a finite number > 0"),
    ("aligned_mtl", {"preference": "abc"}, "aligned_mtl: preference must be a list of numbers"),
    ("moco", {"normalize": 1}, "MoCo: normalize must be true or false"),
    ("cr_mogm", {"base_args": [1]}, "cr_mogm: base_args must map"),
])
def test_weighting_arguments_of_the_wrong_type_get_a_config_error(name, kwargs, why):
    """A string, None or NaN where a number or a list of numbers belongs is named, not a TypeError."""
    with pytest.raises(ConfigError, match=why):
        build_weighting(name, 3, **kwargs)
