"""Properties written once and applied to every aggregator that claims them (TorchJD style)."""

from __future__ import annotations

import numpy as np
import pytest
import quadprog
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lifelong.core.registries import AGGREGATORS
from lifelong.grad import gramian, mgda_weights

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)

DETERMINISTIC = ["aligned_mtl", "cagrad", "config", "cr_mogm", "dualproj", "excess_mtl", "fairgrad", "imtl_g",
                 "mean", "mgda", "modo", "nash_mtl", "sdmgrad", "sum", "trimmed_mean", "upgrad"]
# ⟨d, g_i⟩ ≥ 0 for every task, whatever the Jacobian
NON_CONFLICTING = ["dualproj", "mgda", "upgrad"]
# ⟨d, g_i⟩ ≥ 0 when the task gradients are linearly independent (the papers' assumption)
NON_CONFLICTING_INDEPENDENT = [*NON_CONFLICTING, "config", "fairgrad", "imtl", "imtl_g", "nash_mtl"]
# d(a J) = a d(J) for a > 0
# (not krum: exact in exact arithmetic, but rounding can break its ties between equal scores differently)
HOMOGENEOUS = ["aligned_mtl", "cagrad", "config", "constant", "cr_mogm", "dualproj", "excess_mtl", "imtl",
               "imtl_g", "mean", "mgda", "pcgrad", "sdmgrad", "sum", "trimmed_mean", "upgrad"]
# Arguments an aggregator needs for k tasks, and the fewest tasks it accepts (Krum scores each row
# by its k − f − 2 ≥ 1 nearest others; its refusal of fewer is tested in test_grad_krum.py).
ARGS = {"constant": lambda k: {"weights": [1.0 + i for i in range(k)]}}
MIN_TASKS = {"krum": 3}


@st.composite
def jacobians(draw: st.DrawFn, max_k: int = 5, max_p: int = 6, samples: int | None = None,
              bound: int = 5) -> torch.Tensor:
    """Small integer Jacobians (k × p, or `samples` different ones of one shape stacked): rank
    deficiency, zero and repeated rows all occur."""
    k, p = draw(st.integers(1, max_k)), draw(st.integers(1, max_p))
    shape = (k, p) if samples is None else (samples, k, p)
    values = draw(arrays(np.int64, shape, elements=st.integers(-bound, bound)))
    return torch.from_numpy(values.astype(np.float64) / 2)


@st.composite
def independent_jacobians(draw: st.DrawFn) -> torch.Tensor:
    """Gaussian Jacobians with p ≥ k + 1, so the task gradients are linearly independent."""
    k = draw(st.integers(1, 5))
    p = draw(st.integers(k + 1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    return torch.randn(k, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def call(aggregator: torch.nn.Module, J: torch.Tensor) -> torch.Tensor:
    """aggregator(J) with what some aggregators also take: positive task losses (1, 2, …, k), for
    those that need several independent Jacobians (`samples` > 1) that many copies of J, and for
    those that read the activations J was taken at (GradDrop) one sample of alternating signs."""
    losses = torch.arange(1, len(J) + 1, dtype=J.dtype)
    z = torch.where(torch.arange(J.shape[1]) % 2 == 0, 1.0, -1.0).to(J).unsqueeze(0)
    return aggregator(J.expand(aggregator.samples, *J.shape) if aggregator.samples > 1 else J, losses,
                      representation=z if aggregator.needs_representation else None)


def build(name: str, k: int) -> torch.nn.Module:
    """AGGREGATORS.build(name) with the arguments it needs for k tasks (see ARGS)."""
    return AGGREGATORS.build(name, **ARGS[name](k)) if name in ARGS else AGGREGATORS.build(name)


def _tol(J: torch.Tensor) -> float:
    return 1e-7 * max(1.0, float((J * J).sum(1).max()))


def project_oracle(x: np.ndarray, J: np.ndarray) -> np.ndarray:
    """argmin_y ½‖y − x‖² s.t. J y ≥ 0, the primal QP, by quadprog (identity Hessian)."""
    return quadprog.solve_qp(np.eye(len(x)), x, J.T, np.zeros(len(J)))[0]


def min_norm_oracle(J: np.ndarray) -> np.ndarray:
    """The min-norm point of the convex hull of the rows of J, by quadprog on the weights."""
    k = len(J)
    P = J @ J.T + 1e-12 * np.eye(k) * max(1.0, np.abs(J).max() ** 2)
    C = np.hstack([np.ones((k, 1)), np.eye(k)])
    w = quadprog.solve_qp(P, np.zeros(k), C, np.r_[1.0, np.zeros(k)], meq=1)[0]
    return w @ J


@pytest.mark.parametrize("name", sorted(AGGREGATORS.names()))
@PROPERTY
@given(J=jacobians())
def test_output_is_a_finite_vector_of_the_parameter_space(name: str, J: torch.Tensor) -> None:
    assume(len(J) >= MIN_TASKS.get(name, 1))
    out = call(build(name, len(J)), J)
    assert out.shape == (J.shape[1],) and out.dtype == J.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NON_CONFLICTING)
@PROPERTY
@given(J=jacobians())
def test_non_conflicting(name: str, J: torch.Tensor) -> None:
    d = AGGREGATORS.build(name)(J)
    assert float((J @ d).min()) >= -_tol(J)


@pytest.mark.parametrize("name", NON_CONFLICTING_INDEPENDENT)
@PROPERTY
@given(J=independent_jacobians())
def test_non_conflicting_for_independent_gradients(name: str, J: torch.Tensor) -> None:
    d = call(AGGREGATORS.build(name), J)
    assert float((J @ d).min()) >= -_tol(J)


@PROPERTY
@given(J=jacobians(max_k=2))
def test_pcgrad_never_conflicts_for_two_tasks(J: torch.Tensor) -> None:
    d = AGGREGATORS.build("pcgrad")(J)
    assert float((J @ d).min()) >= -_tol(J)


def test_pcgrad_can_conflict_for_three_tasks() -> None:
    # The paper's guarantee is for two tasks: here g3 ends up opposed to the PCGrad direction.
    J = torch.tensor([[1.0, 0.0], [-0.9, 0.1], [-0.9, -0.1]], dtype=torch.float64)
    d = AGGREGATORS.build("pcgrad")(J)
    assert float((J @ d).min()) < 0


@pytest.mark.parametrize("name", DETERMINISTIC)
@PROPERTY
@given(J=jacobians(), data=st.data())
def test_permutation_invariant(name: str, J: torch.Tensor, data: st.DataObject) -> None:
    perm = torch.tensor(data.draw(st.permutations(range(len(J)))))
    a, b = AGGREGATORS.build(name), AGGREGATORS.build(name)  # fresh state for MoDo, SDMGrad
    atol = 1e-5 * max(1.0, float(J.abs().max()) ** 2)
    torch.testing.assert_close(call(a, J[perm]), call(b, J), atol=atol, rtol=1e-5)


@pytest.mark.parametrize("name", HOMOGENEOUS)
@PROPERTY
@given(J=jacobians(), scale=st.sampled_from([0.01, 3.0, 1e4]))
def test_positively_homogeneous(name: str, J: torch.Tensor, scale: float) -> None:
    a, b = build(name, len(J)), build(name, len(J))  # same default generator for PCGrad
    atol = 1e-5 * scale * max(1.0, float(J.abs().max()) ** 2)
    torch.testing.assert_close(call(a, scale * J), scale * call(b, J), atol=atol, rtol=1e-5)


@PROPERTY
@given(J=jacobians(max_k=6))
def test_mgda_weights_on_simplex_and_direction_is_the_min_norm_point(J: torch.Tensor) -> None:
    w = mgda_weights(gramian(J))
    assert float(w.min()) >= 0 and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    d = AGGREGATORS.build("mgda")(J)
    expected = torch.from_numpy(min_norm_oracle(J.numpy()))
    torch.testing.assert_close(d, expected, atol=1e-5 * max(1.0, float(J.abs().max())), rtol=0)


@PROPERTY
@given(J=jacobians())
def test_upgrad_is_the_mean_of_the_projected_gradients(J: torch.Tensor) -> None:
    Jn = J.numpy()
    expected = np.mean([project_oracle(g, Jn) for g in Jn], axis=0)
    torch.testing.assert_close(AGGREGATORS.build("upgrad")(J), torch.from_numpy(expected),
                               atol=1e-6 * max(1.0, float(J.abs().max()) ** 2), rtol=0)


@PROPERTY
@given(J=jacobians())
def test_dualproj_is_the_projected_mean(J: torch.Tensor) -> None:
    expected = project_oracle(J.numpy().mean(0), J.numpy())
    torch.testing.assert_close(AGGREGATORS.build("dualproj")(J), torch.from_numpy(expected),
                               atol=1e-6 * max(1.0, float(J.abs().max()) ** 2), rtol=0)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@PROPERTY
@given(J=jacobians())
def test_projection_methods_equal_the_mean_without_conflict(name: str, J: torch.Tensor) -> None:
    J = J.abs()  # non-negative rows never conflict
    torch.testing.assert_close(AGGREGATORS.build(name)(J), J.mean(0), atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("name", ["nash_mtl", "fairgrad"])
@PROPERTY
@given(J=independent_jacobians(), alpha=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
def test_fair_weights_solve_their_equation(name: str, J: torch.Tensor, alpha: float) -> None:
    kwargs = {"alpha": alpha} if name == "fairgrad" else {}
    alpha = alpha if name == "fairgrad" else 1.0
    aggregator = AGGREGATORS.build(name, **kwargs)
    aggregator(J)
    w, G = aggregator.last_weights, gramian(J)
    assert float(w.min()) > 0
    torch.testing.assert_close(G @ w, w.pow(-1 / alpha), rtol=1e-5, atol=0)


@PROPERTY
@given(J=independent_jacobians(), c=st.sampled_from([0.1, 0.5, 0.9]))
def test_cagrad_maximises_the_worst_improvement_in_its_ball(J: torch.Tensor, c: float) -> None:
    # CAGrad's primal: max_d min_i ⟨g_i, d⟩ s.t. ‖d − g0‖ ≤ c‖g0‖; any point of the ball is worse.
    d = AGGREGATORS.build("cagrad", c=c, rescale=False)(J)
    g0 = J.mean(0)
    radius = c * float(g0.norm())
    assert float((d - g0).norm()) <= radius * (1 + 1e-6) + 1e-12
    best = float((J @ d).min())
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2000, J.shape[1], generator=gen, dtype=J.dtype)
    ball = g0 + radius * u / u.norm(dim=1, keepdim=True) * torch.rand(2000, 1, generator=gen, dtype=J.dtype)
    assert float((ball @ J.T).min(1).values.max()) <= best + 1e-6 * max(1.0, abs(best))


# Aggregators of three independent Jacobians whose task weights live on the simplex: the
# hyper-parameters drawn, the weights kept on the simplex, and the weights the direction uses
# (d = weights · J of the third sample).
SAMPLED = {
    "modo": (st.fixed_dictionaries({"gamma": st.sampled_from([1e-3, 0.1, 1.0, 10.0]),
                                    "rho": st.sampled_from([0.0, 0.1, 1.0])}), ["lam"], "lam"),
    "sdmgrad": (st.fixed_dictionaries({"lamda": st.sampled_from([0.0, 0.3, 2.0]), "n_iter": st.just(5),
                                       "lr": st.sampled_from([0.5, 1.0, 5.0]),
                                       "momentum": st.sampled_from([0.0, 0.5, 0.9])}),
                ["w", "last_weights"], "last_weights"),
}


@pytest.mark.parametrize("name", SAMPLED)
@PROPERTY
@given(data=st.data())
def test_sampled_aggregators_keep_their_weights_on_the_simplex(name: str, data: st.DataObject) -> None:
    args, on_simplex, used = SAMPLED[name]
    J = data.draw(jacobians(samples=3, bound=6))
    aggregator = AGGREGATORS.build(name, **data.draw(args))
    for step in range(4):
        d = aggregator(J.roll(step, dims=0))
        for attr in on_simplex:
            assert float(getattr(aggregator, attr).min()) >= 0
            assert float(getattr(aggregator, attr).sum()) == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(d, getattr(aggregator, used) @ J.roll(step, dims=0)[2])
