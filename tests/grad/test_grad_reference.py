"""One reference table: every aggregator on the same small Jacobians, expected outputs derived by hand.

Notation: g_i the rows of J, G = J Jᵀ, w the weights, d = wᵀJ the expected output.
"""

from __future__ import annotations

import pytest
import torch

from lifelong.core.registries import AGGREGATORS
from lifelong.grad import MGDA, GradVac, frank_wolfe_weights

# g1 = (2, 1, 0), g2 = (-1, 0, 1): G = [[5, -2], [-2, 2]], the two tasks conflict (⟨g1, g2⟩ = -2).
# Eigen-pairs of G: 6 with (2, -1)/√5 and 1 with (1, 2)/√5.
CONFLICT = [[2.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]
# Orthogonal gradients of norms 1, 2, 3: G = diag(1, 4, 9), no conflict.
ORTHO = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]
# g1 conflicts with g2 (⟨g1, g2⟩ = -2), g3 is orthogonal to both: G = [[1, -2, 0], [-2, 5, 0], [0, 0, 1]],
# G⁻¹ = [[5, 2, 0], [2, 1, 0], [0, 0, 1]].
MIXED = [[1.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

REFERENCE = [
    # mean: d = (g1 + … + gk) / k
    ("mean", {}, CONFLICT, [0.5, 0.5, 0.5]),
    ("mean", {}, ORTHO, [1 / 3, 2 / 3, 1.0]),
    ("mean", {}, MIXED, [-1 / 3, 1 / 3, 1 / 3]),
    # sum: d = g1 + … + gk
    ("sum", {}, CONFLICT, [1.0, 1.0, 1.0]),
    ("sum", {}, MIXED, [-1.0, 1.0, 1.0]),
    # pcgrad, two tasks: g1' = g1 − (−2/2) g2 = g1 + g2, g2' = g2 − (−2/5) g1 = g2 + 0.4 g1,
    # w = (1.4, 2): d = (2.8 − 2, 1.4, 2)
    ("pcgrad", {}, CONFLICT, [0.8, 1.4, 2.0]),
    ("pcgrad", {}, ORTHO, [1.0, 2.0, 3.0]),  # no conflict: the sum
    # pcgrad, MIXED: only (1, 2) conflict, so the order does not matter: g1' = g1 + 0.4 g2,
    # g2' = g2 + 2 g1, g3' = g3; w = (3, 1.4, 1): d = (3 − 2.8, 1.4, 1)
    ("pcgrad", {}, MIXED, [0.2, 1.4, 1.0]),
    # gradvac, first step: targets φ̂ = 0, so each correction is PCGrad's projection
    ("gradvac", {}, CONFLICT, [0.8, 1.4, 2.0]),
    ("gradvac", {}, ORTHO, [1.0, 2.0, 3.0]),
    ("gradvac", {}, MIXED, [0.2, 1.4, 1.0]),
    # mgda, two tasks: γ = (G22 − G12) / (G11 + G22 − 2 G12) = 4/11, w = (4/11, 7/11)
    ("mgda", {}, CONFLICT, [1 / 11, 4 / 11, 7 / 11]),
    # mgda, ORTHO: min Σ w_i² n_i² on the simplex → w ∝ 1/n_i² = (36, 9, 4)/49
    ("mgda", {}, ORTHO, [36 / 49, 18 / 49, 12 / 49]),
    # mgda, MIXED: interior optimum G w = λ 1 → w ∝ G⁻¹ 1 = (7, 3, 1), w = (7, 3, 1)/11
    ("mgda", {}, MIXED, [1 / 11, 3 / 11, 1 / 11]),
    # upgrad, CONFLICT: π(g1) = g1 + g2 (w (1, 1)), π(g2) = g2 + 0.4 g1 (w (0.4, 1)); mean w (0.7, 1)
    ("upgrad", {}, CONFLICT, [0.4, 0.7, 1.0]),
    ("upgrad", {}, ORTHO, [1 / 3, 2 / 3, 1.0]),  # no conflict: the mean
    # upgrad, MIXED: π(g1) = g1 + 0.4 g2, π(g2) = g2 + 2 g1, π(g3) = g3; w = (3, 1.4, 1)/3
    ("upgrad", {}, MIXED, [1 / 15, 7 / 15, 1 / 3]),
    # dualproj, CONFLICT: the mean (½, ½, ½) already has ⟨m, g1⟩ = 1.5, ⟨m, g2⟩ = 0
    ("dualproj", {}, CONFLICT, [0.5, 0.5, 0.5]),
    # dualproj, MIXED: m = (−⅓, ⅓, ⅓) violates ⟨·, g1⟩ ≥ 0 only; m + ⅓ g1 = (0, ⅓, ⅓) satisfies
    # the KKT conditions (multiplier ⅓ on the active constraint)
    ("dualproj", {}, MIXED, [0.0, 1 / 3, 1 / 3]),
    # imtl_g: w ∝ G⁻¹ n, n = (√5, √2), G⁻¹ = [[2, 2], [2, 5]]/6 → w ∝ (2√5 + 2√2, 2√5 + 5√2)
    ("imtl_g", {}, CONFLICT, [0.1622776602, 0.3874258867, 0.6125741133]),
    ("imtl_g", {}, ORTHO, [6 / 11, 6 / 11, 6 / 11]),  # w ∝ (1, ½, ⅓): equal projections
    # imtl_g, MIXED: n = (1, √5, 1), w ∝ G⁻¹ n = (5 + 2√5, 2 + √5, 1)
    ("imtl_g", {}, MIXED, [0.06798926671, 0.2880071555, 0.06798926671]),
    # nash_mtl, CONFLICT: w ⊙ Gw = 1 gives 5 w1² = 2 w2², so w2 = √2.5 w1, w1 = (5 − √10)^(−½)
    ("nash_mtl", {}, CONFLICT, [0.3089798472, 0.7376664856, 1.166353124]),
    ("nash_mtl", {}, ORTHO, [1.0, 1.0, 1.0]),  # w_i = 1/n_i: the sum of unit vectors
    # nash_mtl, MIXED: w3 = 1, w1 = √5 w2, w2 = (5 − 2√5)^(−½)
    ("nash_mtl", {}, MIXED, [0.3249196962, 1.37638192, 1.0]),
    # fairgrad (α = 2), ORTHO: n_i² w_i = w_i^(−½) → w_i = n_i^(−4/3), d_i = n_i^(−1/3)
    ("fairgrad", {}, ORTHO, [1.0, 0.793700526, 0.6933612744]),
    # fairgrad with α = 1 is Nash-MTL
    ("fairgrad", {"alpha": 1.0}, MIXED, [0.3249196962, 1.37638192, 1.0]),
    # aligned_mtl, CONFLICT: B = √1 (v1v1ᵀ/√6 + v2v2ᵀ) with the eigenvectors above,
    # w = B (½, ½) = (2, −1)/(10√6) + (3, 6)/10
    ("aligned_mtl", {}, CONFLICT, [0.2041241452, 0.3816496581, 0.559175171]),
    ("aligned_mtl", {}, ORTHO, [1 / 3, 1 / 3, 1 / 3]),  # w_i = n_min / (3 n_i)
    # aligned_mtl, MIXED: the 2×2 block M has M^(−½) = √2/4 [[6, 2], [2, 2]], λ_min = 3 − 2√2,
    # w = (√2 − 1)/3 · (2√2, √2, 1)
    ("aligned_mtl", {}, MIXED, [0.0, 0.1952621459, 0.1380711875]),
    # cagrad (c = ½), CONFLICT: g0 = (½, ½, ½), c‖g0‖ = √3/4; h(γ) = 1.5 γ + √3/4 √(11γ² − 8γ + 2)
    # increases on [0, 1] (h' has no root, h'(0) > 0) → w = e2; d = (g0 + √3/4 g2/√2)/(1 + ¼)
    ("cagrad", {}, CONFLICT, [0.1550510257, 0.4, 0.6449489743]),
    # cagrad, ORTHO: c‖g0‖ = √14/6; the inner optimum is e1 (its gradient is smallest there),
    # d = (g0 + √14/6 g1)/(1 + ¼)
    ("cagrad", {}, ORTHO, [0.7655543182, 0.5333333333, 0.8]),
    ("cagrad", {"c": 0.0}, MIXED, [-1 / 3, 1 / 3, 1 / 3]),  # c = 0 is the mean
    # config, CONFLICT: the unit gradients have cosine ρ, U⁺1 ∝ u1 + u2, and the length
    # Σ ⟨g_i, û⟩ gives d = (√5 + √2)/2 · (u1 + u2)
    ("config", {}, CONFLICT, [0.341886117, 0.816227766, 1.290569415]),
    ("config", {}, ORTHO, [2.0, 2.0, 2.0]),  # û = (1,1,1)/√3, length 6/√3
    # config, MIXED: U⁻¹1 = (1, 2 + √5, 1), d = (2 + √5)/(11 + 4√5) · (1, 2 + √5, 1)
    ("config", {}, MIXED, [0.2123952179, 0.899720581, 0.2123952179]),
    # constant: d = Σ w_i g_i with the given w
    ("constant", {"weights": [2.0, -1.0]}, CONFLICT, [5.0, 2.0, -1.0]),
    ("constant", {"weights": [1.0, 0.5, 1 / 3]}, ORTHO, [1.0, 1.0, 1.0]),
    # krum (f = 0: scored by the nearest other row), ORTHO: d12 = 5, d13 = 10, d23 = 13, s = (5, 5, 10),
    # the tie goes to g1; with m = 2, the mean of g1 and g2
    ("krum", {}, ORTHO, [1.0, 0.0, 0.0]),
    ("krum", {"n_selected": 2}, ORTHO, [0.5, 1.0, 0.0]),
    # krum, MIXED: d12 = 10, d13 = 2, d23 = 6, s = (2, 6, 2) → g1; m = 2 → mean of g1 and g3
    ("krum", {}, MIXED, [1.0, 0.0, 0.0]),
    ("krum", {"n_selected": 2}, MIXED, [0.5, 0.0, 0.5]),
    # trimmed_mean: b = 0 is the mean; b = 1 on ORTHO keeps each column's median, 0
    ("trimmed_mean", {}, CONFLICT, [0.5, 0.5, 0.5]),
    ("trimmed_mean", {"trim_number": 1}, ORTHO, [0.0, 0.0, 0.0]),
    # trimmed_mean, b = 1: columns sorted (−7, 1, 2, 3, 100) and (−1, 0, 2, 3, 5) → (2, 5/3)
    ("trimmed_mean", {"trim_number": 1}, [[1.0, 5.0], [2.0, -1.0], [3.0, 0.0], [100.0, 2.0], [-7.0, 3.0]],
     [2.0, 5 / 3]),
    # cr_mogm, first step: λ_1 = λ̂_1, the base's (MGDA's) weights
    ("cr_mogm", {}, CONFLICT, [1 / 11, 4 / 11, 7 / 11]),
    ("cr_mogm", {}, MIXED, [1 / 11, 3 / 11, 1 / 11]),
    # excess_mtl, first step: the excess risks only become the normalisers, weights stay 1: the sum
    ("excess_mtl", {}, CONFLICT, [1.0, 1.0, 1.0]),
    ("excess_mtl", {}, MIXED, [-1.0, 1.0, 1.0]),
    # modo (γ = 1e-3, ρ = 0.1), three copies of CONFLICT: λ0 − γ(G λ0 + ρ λ0) = ½ − γ (1.55, 0.05)
    # = (0.49845, 0.49995), projected (+0.0008 each): λ1 = (0.49925, 0.50075), d = λ1ᵀ J
    ("modo", {}, [CONFLICT] * 3, [0.49775, 0.49925, 0.50075]),
    # modo, J1 = I, J2 = [[1, 0], [−1, 1]], J3 = [[3, 1], [1, −1]]: G12 = J1 J2ᵀ = [[1, −1], [0, 1]],
    # G12 λ0 + ρ λ0 = (0.05, 0.55), λ1 = (0.49995, 0.49945) + 0.0003 = (0.50025, 0.49975), d = λ1ᵀ J3
    ("modo", {}, [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [-1.0, 1.0]], [[3.0, 1.0], [1.0, -1.0]]],
     [2.0005, 0.0005]),
    # sdmgrad (λ = 0.3), three copies of CONFLICT: the inner steps converge (contraction 1/12) to
    # argmin ½‖Jᵀ(w + λ/2)‖², whose effective weights (w + λ/2)/(1 + λ) are MGDA's (4/11, 7/11)
    # since 4/11 lies within [λ/2, 1 + λ/2]/(1 + λ)
    ("sdmgrad", {}, [CONFLICT] * 3, [1 / 11, 4 / 11, 7 / 11]),
    # sdmgrad, G = diag(1, 9): MGDA's 0.9 exceeds (1 + λ/2)/(1 + λ) = 23/26, so w = (1, 0) and the
    # effective weights are (23/26, 3/26)
    ("sdmgrad", {}, [[[1.0, 0.0], [0.0, 3.0]]] * 3, [23 / 26, 9 / 26]),
    # sdmgrad, one inner step, J1 = I, J2 = [[2, −1], [2, 2]], J3 = [[3, 1], [1, −1]]: G12 = [[2, 2],
    # [−1, 2]], ‖G12‖₂ = 3; w0 − G12 (w0 + 0.15)/3 = (−0.3667, 0.2833) projects to (0.175, 0.825),
    # effective weights (0.325, 0.975)/1.3 = (¼, ¾), d = ¼ (3, 1) + ¾ (1, −1)
    ("sdmgrad", {"n_iter": 1}, [[[1.0, 0.0], [0.0, 1.0]], [[2.0, -1.0], [2.0, 2.0]], [[3.0, 1.0], [1.0, -1.0]]],
     [1.5, -0.5]),
    # db_mtl, first step (β₁ = 0.9, ĝ = 0.1 g/L), losses (1, 2): ĝ = 0.1 (2, 1, 0), 0.1 (−½, 0, ½),
    # α = (1, √5/√(½)) = (1, √10): d = 0.1 (2 − √10/2, 1, √10/2)
    ("db_mtl", {}, CONFLICT, [0.04188611699, 0.1, 0.1581138830], [1.0, 2.0]),
    ("db_mtl", {}, ORTHO, [0.1, 0.1, 0.1], [1.0, 2.0, 3.0]),  # g_i/L_i = e_i: unit log-loss gradients
    # moco, first step, losses (1, 2): rows rescaled to lengths 1, 2, Y = ½ Ĵ has rows u1/2 and
    # (−1, 0, 1)/√2, YYᵀ = [[¼, −1/√10], [−1/√10, 1]]; λ − 0.1 YYᵀλ then Π shifts both entries
    # equally: λ1 − λ2 = 0.1 · ½ · (1 − ¼) → λ = (0.51875, 0.48125), d = λ1 u1/2 + λ2 (−1, 0, 1)/√2
    ("moco", {}, CONFLICT, [-0.1083030858, 0.1159960263, 0.3402951384], [1.0, 2.0]),
    # moco, ORTHO, losses (1, 2, 3): Y = ½ diag(1, 2, 3), λ = ⅓ − (1/30)(¼, 1, 9/4) + 3.5/90
    # = (32.75, 30.5, 26.75)/90, d = Yᵀλ = (32.75, 61, 80.25)/180
    ("moco", {}, ORTHO, [0.1819444444, 0.3388888889, 0.4458333333], [1.0, 2.0, 3.0]),
    # imtl, first step: s = 0, so the scaled gradients are the raw ones and the weights IMTL-G's
    ("imtl", {}, CONFLICT, [0.1622776602, 0.3874258867, 0.6125741133], [1.0, 2.0]),
    ("imtl", {}, MIXED, [0.06798926671, 0.2880071555, 0.06798926671], [3.0, 0.5, 1.0]),
]


def _case_id(case: tuple) -> str:
    name, kwargs, J, *_ = case
    label = {id(CONFLICT): "conflict", id(ORTHO): "ortho", id(MIXED): "mixed"}.get(id(J), "own")
    return f"{name}-{label}" + "".join(f"-{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("case", REFERENCE, ids=_case_id)
def test_reference_value(case: tuple) -> None:
    # (name, kwargs, J, expected) or (name, kwargs, J, expected, losses) for aggregators that weigh
    # by the task losses; J is a stack (samples × k × p) for those that need several samples
    name, kwargs, J, expected, *losses = case
    aggregator = AGGREGATORS.build(name, **kwargs)
    out = aggregator(torch.tensor(J, dtype=torch.float64),
                     torch.tensor(losses[0], dtype=torch.float64) if losses else None)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), atol=1e-7, rtol=1e-7)


def test_every_deterministic_aggregator_has_reference_rows() -> None:
    covered = {case[0] for case in REFERENCE}
    # rgw: random weights, see test_grad_stochastic; graddrop: random masks that also need the
    # activations J was taken at, see test_grad_graddrop
    assert set(AGGREGATORS.names()) - covered == {"graddrop", "rgw"}


def test_reference_in_float32_matches() -> None:
    out = AGGREGATORS.build("upgrad")(torch.tensor(MIXED, dtype=torch.float32))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([1 / 15, 7 / 15, 1 / 3]), atol=1e-6, rtol=1e-6)


def test_gradvac_second_step_follows_its_ema_target() -> None:
    # After step 1 (β = 0.01): φ̂ = 0.01 φ with φ = cos(g1, g2) = −2/√10. Step 2, φ < φ̂:
    # g1' = g1 + √5/√2 · c · g2 and g2' = g2 + √2/√5 · c · g1, c = (φ̂√(1−φ²) − φ√(1−φ̂²))/√(1−φ̂²)
    # = 0.6275564546, so w = (1 + √(2/5) c, 1 + √(5/2) c) = (1.396901551, 1.992253878).
    vac = GradVac()
    J = torch.tensor(CONFLICT, dtype=torch.float64)
    vac(J)
    torch.testing.assert_close(vac.targets, torch.tensor([[0.0, -0.00632455532], [-0.00632455532, 0.0]],
                                                         dtype=torch.float64))
    torch.testing.assert_close(vac(J), torch.tensor([0.8015492243, 1.396901551, 1.992253878],
                                                    dtype=torch.float64))


def test_mgda_frank_wolfe_approaches_the_exact_min_norm_point() -> None:
    G = torch.tensor(MIXED, dtype=torch.float64) @ torch.tensor(MIXED, dtype=torch.float64).T
    w = frank_wolfe_weights(G, max_iter=5000, tol=1e-12)
    torch.testing.assert_close(w, torch.tensor([7 / 11, 3 / 11, 1 / 11], dtype=torch.float64), atol=2e-3, rtol=0)
    d = MGDA(frank_wolfe=True)(torch.tensor(MIXED, dtype=torch.float64))
    assert float(d @ d) == pytest.approx(1 / 11, rel=2e-2)  # ‖d*‖² = 1/11
