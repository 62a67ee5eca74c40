"""GEM's dual-cone projection and A-GEM's closed form, against hand values and a quadprog oracle."""

from __future__ import annotations

import numpy as np
import pytest
import quadprog
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.core.errors import ShapeMismatchError
from lifelong.grad import agem_project, gem_project

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True)


@st.composite
def instances(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """A gradient g (p,) and k memory gradients (k × p), Gaussian, k ≤ p."""
    p = draw(st.integers(2, 10))
    k = draw(st.integers(1, p))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return (torch.randn(p, generator=gen, dtype=torch.float64),
            torch.randn(k, p, generator=gen, dtype=torch.float64))


def gem_oracle(g: np.ndarray, M: np.ndarray, margin: float) -> np.ndarray:
    """The official GEM dual, min ½vᵀ(MMᵀ)v + gᵀMᵀv s.t. v ≥ margin, by quadprog; g̃ = Mᵀv + g."""
    P = M @ M.T + 1e-12 * np.eye(len(M))
    v = quadprog.solve_qp(P, -(M @ g), np.eye(len(M)), np.full(len(M), margin))[0]
    return M.T @ v + g


def test_agem_hand_values() -> None:
    g, ref = torch.tensor([1.0, -2.0]), torch.tensor([0.0, 1.0])
    # ⟨g, ref⟩ = −2 < 0 → g − (−2/1) ref = (1, 0)
    torch.testing.assert_close(agem_project(g, ref), torch.tensor([1.0, 0.0]))
    # no conflict: unchanged
    torch.testing.assert_close(agem_project(torch.tensor([1.0, 2.0]), ref), torch.tensor([1.0, 2.0]))


def test_gem_hand_values() -> None:
    # g = (1, −1), memories e2 and (1, 1): ⟨g, e2⟩ = −1 < 0. Margin 0: the projection of g onto
    # {x2 ≥ 0, x1 + x2 ≥ 0} is (1, 0).
    g = torch.tensor([1.0, -1.0], dtype=torch.float64)
    M = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(gem_project(g, M, margin=0.0), torch.tensor([1.0, 0.0], dtype=torch.float64))
    # Margin ½: v = ½ + w, w ≥ 0 minimises ½wᵀPw + (u + ½P1)ᵀw with P = MMᵀ = [[1, 1], [1, 2]],
    # u = Mg = (−1, 0): the linear term is (0, 1.5) ≥ 0, so w = 0, v = (½, ½), g̃ = g + ½e2 + ½(1, 1).
    torch.testing.assert_close(gem_project(g, M, margin=0.5), torch.tensor([1.5, 0.0], dtype=torch.float64))
    # no violated constraint: g is returned as is, whatever the margin
    ok = torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert gem_project(ok, M) is ok


@PROPERTY
@given(case=instances())
def test_agem_matches_the_half_space_projection(case: tuple[torch.Tensor, torch.Tensor]) -> None:
    g, M = case
    ref = M[0]
    out = agem_project(g, ref)
    assert float(out @ ref) >= -1e-10
    expected = quadprog.solve_qp(np.eye(len(g)), g.numpy(), ref.numpy()[:, None], np.zeros(1))[0]
    torch.testing.assert_close(out, torch.from_numpy(expected), atol=1e-9, rtol=1e-9)


@PROPERTY
@given(case=instances(), margin=st.sampled_from([0.0, 0.5, 2.0]))
def test_gem_never_conflicts_and_equals_the_reference_qp(case: tuple[torch.Tensor, torch.Tensor],
                                                         margin: float) -> None:
    g, M = case
    out = gem_project(g, M, margin=margin)
    assert float((M @ out).min()) >= -1e-8
    if float((M @ g).min()) >= 0:
        assert out is g
    else:
        expected = torch.from_numpy(gem_oracle(g.numpy(), M.numpy(), margin))
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


@PROPERTY
@given(case=instances())
def test_gem_with_zero_margin_is_the_euclidean_projection(case: tuple[torch.Tensor, torch.Tensor]) -> None:
    g, M = case
    expected = quadprog.solve_qp(np.eye(len(g)), g.numpy(), M.numpy().T, np.zeros(len(M)))[0]
    torch.testing.assert_close(gem_project(g, M, margin=0.0), torch.from_numpy(expected),
                               atol=1e-7, rtol=1e-7)


def test_gem_handles_float32_large_and_degenerate_memories() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(3, 5000, generator=gen)
    M = torch.cat([base, base[:1], -base[1:2], torch.zeros(1, 5000)])  # repeated, opposite, zero
    free = torch.randn(5000, generator=gen)
    g = free - base.sum(0)
    out = gem_project(g, M)
    assert out.dtype == torch.float32
    # float32 round-off only: ⟨out, g_k⟩ ≥ −1e-5 ‖g_k‖ ‖g‖, and out keeps the free component
    assert float((M @ out).min()) >= -1e-5 * float(M.norm(dim=1).max() * g.norm())
    assert float(torch.nn.functional.cosine_similarity(out, free, dim=0)) > 0.9


def test_projection_shape_errors() -> None:
    with pytest.raises(ShapeMismatchError, match="5 entries"):
        gem_project(torch.ones(5), torch.ones(2, 4))
    with pytest.raises(ShapeMismatchError, match="flat gradient"):
        agem_project(torch.ones(2, 2), torch.ones(4))
    with pytest.raises(ShapeMismatchError, match="same parameters"):
        agem_project(torch.ones(3), torch.ones(4))
    assert torch.equal(gem_project(torch.ones(3), torch.ones(0, 3)), torch.ones(3))
