"""Difficulty scorers on a tiny model whose softmax is worked by hand; batching, no autograd graph."""

import math

import pytest
import torch
from torch import nn

from lifelong.core.errors import ConfigError, DataError, LabelOutOfRangeError, ShapeMismatchError
from lifelong.core.registries import SCORERS
from lifelong.curriculum.scorers import PeriodicScores, PrecomputedScorer, TransferScorer

E, E2 = math.e, math.e**2
# Logits [2, 0, 0] (label 0) and [0, 1, 0] (label 2):
#   p1 = (e², 1, 1)/(e² + 2) = (0.78699, 0.10651, 0.10651); p2 = (1, e, 1)/(e + 2) = (0.21194, 0.57612, 0.21194)
EXPECTED = {
    "loss": [math.log(E2 + 2) - 2, math.log(E + 2)],                         # 0.23954, 1.55144
    "confidence": [1 - E2 / (E2 + 2), 1 - 1 / (E + 2)],                      # 0.21301, 0.78806 (label 2)
    "least_confidence": [1 - E2 / (E2 + 2), 1 - E / (E + 2)],                # 0.21301, 0.42388
    "margin": [1 - (E2 - 1) / (E2 + 2), 1 - (E - 1) / (E + 2)],              # 0.31952, 0.63583
}


def tiny_model() -> nn.Module:
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    return model


X = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
Y = torch.tensor([0, 2])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_scorers_match_hand_values(name):
    scores = SCORERS.build(name)(tiny_model(), X, Y)
    assert scores.tolist() == pytest.approx(EXPECTED[name], abs=1e-6)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scoring_builds_no_graph_batches_and_restores_the_mode(name):
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, 4)).train()
    model[2].eval()  # a module the user keeps in eval mode stays so
    x, y = torch.randn(37, 5), torch.randint(0, 4, (37,))
    whole = SCORERS.build(name, batch_size=1024)(model, x, y)
    pieces = SCORERS.build(name, batch_size=5)(model, x, y)
    assert whole.shape == (37,) and not whole.requires_grad and whole.grad_fn is None
    assert torch.allclose(whole, pieces, atol=1e-6)  # batching changes nothing (dropout is off)
    assert model.training and model[1].training and not model[2].training
    assert all(p.grad is None for p in model.parameters())


def test_forward_override_receives_rows():
    calls = []

    def forward(xb, rows):
        calls.append((rows.start, xb.shape[0]))
        return tiny_model()(xb)

    scores = SCORERS.build("loss", batch_size=1)(tiny_model(), X, Y, forward)
    assert calls == [(0, 1), (1, 1)]
    assert scores.tolist() == pytest.approx(EXPECTED["loss"], abs=1e-6)


def test_length_counts_non_padding_tokens():
    tokens = torch.tensor([[5, 3, 0, 0], [7, 0, 0, 0], [1, 2, 3, 4]])
    assert SCORERS.build("length")(None, tokens, torch.zeros(3, dtype=torch.long)).tolist() == [2, 1, 4]
    padded = torch.full((2, 3), -1)
    padded[0, :2] = 9
    assert SCORERS.build("length", pad=-1)(None, padded, torch.zeros(2, dtype=torch.long)).tolist() == [2, 0]


def test_precomputed_scores_are_returned_and_checked():
    scorer = SCORERS.build("precomputed", scores=[0.5, 0.1])
    assert scorer(None, X, Y).tolist() == pytest.approx([0.5, 0.1])
    with pytest.raises(ShapeMismatchError, match="2 scores"):
        scorer(None, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="finite"):
        PrecomputedScorer([float("nan")])


def test_transfer_scores_with_the_teacher_not_the_student():
    student = nn.Linear(2, 3)
    scorer = SCORERS.build("teacher", teacher=tiny_model(), signal="margin")
    assert scorer(student, X, Y).tolist() == pytest.approx(EXPECTED["margin"], abs=1e-6)
    with pytest.raises(ConfigError, match="model-based"):
        TransferScorer(tiny_model(), signal="length")


def test_bad_inputs_raise_typed_errors():
    loss = SCORERS.build("loss")
    with pytest.raises(LabelOutOfRangeError, match=r"\[0, 2\]"):
        loss(tiny_model(), X, torch.tensor([0, 3]))
    with pytest.raises(ShapeMismatchError):
        loss(tiny_model(), X, torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigError, match="needs the model"):
        loss(None, X, Y)


def test_periodic_rescoring_every_n_units():
    calls = []

    class Counting(PrecomputedScorer):
        def __call__(self, model, x, y, forward=None):
            calls.append(1)
            return super().__call__(model, x, y, forward)

    periodic = PeriodicScores(Counting([1.0, 2.0]), every=3)
    fresh = [periodic.refresh(t, None, X, Y) is not None for t in range(8)]
    assert fresh == [True, False, False, True, False, False, True, False] and len(calls) == 3
    once = PeriodicScores(Counting([1.0, 2.0]), every=0)
    assert [once.refresh(t, None, X, Y) is not None for t in range(4)] == [True, False, False, False]


@pytest.mark.parametrize(("name", "args", "error", "why"), [
    ("loss", {"batch_size": "abc"}, ConfigError, "LossScorer: batch_size must be a positive integer"),
    ("margin", {"batch_size": None}, ConfigError, "MarginScorer: batch_size must be a positive integer"),
    ("length", {"pad": "x"}, ConfigError, "LengthScorer: pad must be a number"),
    ("precomputed", {"scores": "abc"}, DataError, "scores must be numbers, one per example"),
    ("transfer", {"teacher": "abc"}, ConfigError, "teacher must be a trained nn.Module"),
])
def test_scorer_arguments_of_the_wrong_type_are_named(name, args, error, why):
    from lifelong.core.registries import SCORERS

    with pytest.raises(error, match=why):
        SCORERS.build(name, **args)
