"""MNIST and Fashion-MNIST sources: generated IDX folders, validation, the real Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong.core.errors import DataError
from lifelong.data.sources import load_source
from lifelong.data.sources.idx import write_idx
from lifelong.data.sources.mnist import FASHION_CLASSES


@pytest.mark.parametrize("gz", [True, False])
def test_loads_generated_idx_as_scaled_tensors(isolated, make_mnist, gz):
    folder = isolated.tmp / "mine"
    arrays = make_mnist(folder, n_train=12, n_test=5, gz=gz)
    data = load_source("mnist", root=str(folder), download=False)
    assert data.name == "mnist" and data.class_names == tuple("0123456789")
    assert data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    expected = torch.from_numpy(arrays["train_x"].astype(np.float32) / 255.0).unsqueeze(1)
    torch.testing.assert_close(data.train_x, expected, rtol=0, atol=0)
    assert data.train_y.tolist() == arrays["train_y"].tolist()
    assert data.test_y.tolist() == arrays["test_y"].tolist()


def test_pixel_255_is_one_and_0_is_zero(isolated, make_mnist):
    folder = isolated.tmp / "mine"
    arrays = make_mnist(folder)
    arrays["train_x"][:] = 0
    arrays["train_x"][3, 4, 5] = 255
    write_idx(folder / "train-images-idx3-ubyte.gz", arrays["train_x"])
    x = load_source("mnist", root=str(folder), download=False).train_x
    assert x[3, 0, 4, 5].item() == 1.0 and x.sum().item() == 1.0


@pytest.mark.parametrize("alias", ["fashion-mnist", "fashion_mnist", "fmnist", "FashionMNIST"])
def test_fashion_aliases_give_fashion_names(isolated, make_mnist, alias):
    make_mnist(isolated.tmp / "f")
    data = load_source(alias, root=str(isolated.tmp / "f"), download=False)
    assert data.name == "fashion-mnist"
    assert data.class_names == FASHION_CLASSES and data.class_names[0] == "T-shirt/top"


@pytest.mark.parametrize(
    ("file", "array", "fragment"),
    [
        ("train-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8), r"outside \[0, 10\)"),
        ("train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8), "expected 12 labels"),
        ("t10k-images-idx3-ubyte.gz", np.zeros((5, 784), np.uint8), r"images \(N, H, W\)"),
        ("t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.int32), r"images \(N, H, W\)"),
    ],
)
def test_inconsistent_files_raise_data_error_naming_the_file(
    isolated, make_mnist, file, array, fragment
):
    folder = isolated.tmp / "bad"
    make_mnist(folder)
    write_idx(folder / file, array)
    with pytest.raises(DataError, match=fragment) as info:
        load_source("mnist", root=str(folder), download=False)
    assert file in str(info.value)


def test_real_fashion_mnist_from_debian_package(fashion):
    """The Debian dataset-fashion-mnist files: 60000/10000 images, 6000/1000 per class."""
    assert fashion.name == "fashion-mnist" and fashion.class_names == FASHION_CLASSES
    assert fashion.train_x.shape == (60000, 1, 28, 28)
    assert fashion.test_x.shape == (10000, 1, 28, 28)
    assert fashion.train_x.dtype == torch.float32 and fashion.test_y.dtype == torch.int64
    assert torch.bincount(fashion.train_y, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(fashion.test_y, minlength=10).tolist() == [1000] * 10
    assert fashion.train_x.min().item() == 0.0 and fashion.train_x.max().item() == 1.0
    # the training-set pixel mean quoted with Fashion-MNIST normalisation recipes: 0.2860
    assert abs(fashion.train_x.mean().item() - 0.2860) < 5e-4
