import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.core.errors import LabelOutOfRangeError, ShapeMismatchError
from lifelong.meta.prototypes import ClassPrototypes, PrototypeClassifier


def test_means_by_hand():
    protos = ClassPrototypes(3, 2)
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0], [2.0, 2.0]])
    y = torch.tensor([0, 0, 2, 0])
    protos.update(z, y)
    torch.testing.assert_close(protos.means, torch.tensor([[2.0, 4 / 3], [0.0, 0.0], [0.0, 5.0]]))
    assert protos.counts.tolist() == [3, 0, 1]
    assert protos.seen.tolist() == [True, False, True]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), n_classes=st.integers(1, 5), cuts=st.lists(st.integers(0, 60), max_size=4),
       seed=st.integers(0, 10_000))
def test_running_means_equal_class_means_however_batched(n, n_classes, cuts, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randint(n_classes, (n,), generator=g)
    protos = ClassPrototypes(n_classes, 3, dtype=torch.float64)
    bounds = [0, *sorted(min(c, n) for c in cuts), n]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        protos.update(z[a:b], y[a:b])
    for c in range(n_classes):
        rows = z[y == c]
        assert int(protos.counts[c]) == len(rows)
        expected = rows.mean(0) if len(rows) else torch.zeros(3, dtype=torch.float64)
        torch.testing.assert_close(protos.means[c], expected)


def test_scores_are_negative_squared_distances_and_unseen_classes_lose():
    protos = ClassPrototypes(3, 2)
    protos.update(torch.tensor([[0.0, 0.0], [4.0, 0.0]]), torch.tensor([0, 1]))
    scores = protos.scores(torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(scores[0, :2], torch.tensor([-2.0, -10.0]))
    assert scores[0, 2] == torch.finfo(torch.float32).min
    assert scores.argmax(1).tolist() == [0]


def test_state_dict_round_trip_holds_tensors_only():
    protos = ClassPrototypes(4, 2)
    protos.update(torch.randn(10, 2), torch.randint(4, (10,)))
    state = protos.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    restored = ClassPrototypes.from_state(state)
    torch.testing.assert_close(restored.means, protos.means)
    assert torch.equal(restored.counts, protos.counts)
    protos.update(torch.randn(3, 2), torch.tensor([0, 1, 2]))  # the copy is independent
    assert not torch.equal(restored.counts, protos.counts)


def test_bad_inputs_raise_typed_errors():
    protos = ClassPrototypes(3, 2)
    with pytest.raises(ShapeMismatchError, match=r"\(N, 2\)"):
        protos.update(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(LabelOutOfRangeError, match=r"\[0, 2\]"):
        protos.update(torch.zeros(2, 2), torch.tensor([0, 3]))


def test_classifier_learns_new_classes_without_moving_old_ones():
    encoder = torch.nn.Flatten()
    clf = PrototypeClassifier(encoder, 2)
    assert torch.equal(clf.predict(torch.zeros(1, 2)), torch.zeros(1, 2))
    a = torch.tensor([[0.0, 0.0], [0.2, 0.0]])
    clf.observe(a, torch.tensor([0, 0]))
    before = clf.prototypes.means[0].clone()
    clf.observe(torch.tensor([[5.0, 5.0]]), torch.tensor([1]))
    assert torch.equal(clf.prototypes.means[0], before)
    assert clf.predict(torch.tensor([[0.1, 0.0], [4.0, 4.5]])).argmax(1).tolist() == [0, 1]
