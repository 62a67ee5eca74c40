"""Backbone arguments (model_args on the command line) of the wrong type are ConfigErrors naming them."""

import pytest
import torch

from lifelong.core.errors import ConfigError, IncompatibleError, ShapeMismatchError
from lifelong.models import build_model


@pytest.mark.parametrize(("name", "args", "why"), [
    ("mlp", {"hidden": 256}, r"mlp: hidden must be a list of layer widths, e\.g\. \[400, 400\]; got 256"),
    ("mlp", {"hidden": "256"}, "mlp: hidden must be a list of layer widths"),
    ("mlp", {"hidden": [64, 0]}, "mlp: each hidden width must be a positive integer, got 0"),
    ("mlp", {"hidden": [64.5]}, "mlp: each hidden width must be a positive integer"),
    ("mlp", {"dropout": "abc"}, "mlp: dropout must be a number"),
    ("mlp", {"dropout": 1.0}, r"mlp: dropout is a probability in \[0, 1\)"),
    ("lenet", {"width": None}, "lenet: width must be a positive integer"),
    ("resnet18", {"nf": -1}, "resnet18: nf must be a positive integer"),
])
def test_bad_backbone_arguments_are_named(name, args, why):
    with pytest.raises(ConfigError, match=why):
        build_model(name, (1, 28, 28) if name != "resnet18" else (3, 32, 32), 10, [[0, 1]], **args)


def test_good_arguments_build_the_layers_asked_for():
    model = build_model("mlp", (1, 28, 28), 10, [[0, 1]], hidden=[32, 16], dropout=0.25)
    assert model.backbone.out_features == 16
    assert [m.out_features for m in model.backbone.net if hasattr(m, "out_features")] == [32, 16]


@pytest.mark.parametrize("name", ["lenet", "resnet18"])
def test_convolutional_backbones_refuse_flat_inputs_with_what_to_do(name):
    """They failed with "not enough values to unpack" (lenet) or inside conv2d at the first forward (resnet18)."""
    with pytest.raises(ShapeMismatchError, match=rf"{name} convolves images .* shape \(64,\); use 'mlp'"):
        build_model(name, (64,), 10, [range(10)])


def test_a_multi_head_model_called_without_task_labels_says_so():
    model = build_model("mlp", (4,), 4, [[0, 1], [2, 3]], head="multi", hidden=(8,))
    with pytest.raises(IncompatibleError, match="needs the task labels: call model"):
        model(torch.zeros(2, 4))  # it failed with TypeError: 'NoneType' has no len()
    assert model(torch.zeros(2, 4), torch.tensor([0, 1])).shape == (2, 4)


def test_a_growing_head_given_no_class_stays_as_it_is():
    model = build_model("mlp", (4,), 4, [[0, 1], [2, 3]], head="incremental", hidden=(8,))
    assert model.adapt([1]) and not model.adapt([])  # [] raised "max() arg is an empty sequence"
    assert model(torch.zeros(1, 4)).shape == (1, 2)
