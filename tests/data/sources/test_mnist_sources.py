"""MNIST and Fashion-MNIST sources: generated IDX folders, validation, the real Fashion-MNIST."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lifelong.core.errors import ChecksumError, DataError
from lifelong.data.sources import load_source, mnist
from lifelong.data.sources.idx import write_idx
from lifelong.data.sources.mnist import FASHION_CLASSES, IDX_FILES

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("gz", [True, False])
def test_loads_generated_idx_as_scaled_tensors(isolated, make_mnist, trust_idx, gz):
    folder = isolated.tmp / "mine"
    arrays = make_mnist(folder, n_train=12, n_test=5, gz=gz)
    trust_idx(folder, "mnist")
    data = load_source("mnist", root=str(folder), download=False)
    assert data.name == "mnist" and data.class_names == tuple("0123456789")
    assert data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    expected = torch.from_numpy(arrays["train_x"].astype(np.float32) / 255.0).unsqueeze(1)
    torch.testing.assert_close(data.train_x, expected, rtol=0, atol=0)
    assert data.train_y.tolist() == arrays["train_y"].tolist()
    assert data.test_y.tolist() == arrays["test_y"].tolist()


def test_pixel_255_is_one_and_0_is_zero(isolated, make_mnist, trust_idx):
    folder = isolated.tmp / "mine"
    arrays = make_mnist(folder)
    arrays["train_x"][:] = 0
    arrays["train_x"][3, 4, 5] = 255
    write_idx(folder / "train-images-idx3-ubyte.gz", arrays["train_x"])
    trust_idx(folder, "mnist")
    x = load_source("mnist", root=str(folder), download=False).train_x
    assert x[3, 0, 4, 5].item() == 1.0 and x.sum().item() == 1.0


@pytest.mark.parametrize("alias", ["fashion-mnist", "fashion_mnist", "fmnist", "FashionMNIST"])
def test_fashion_aliases_give_fashion_names(isolated, make_mnist, trust_idx, alias):
    make_mnist(isolated.tmp / "f")
    trust_idx(isolated.tmp / "f", "fashion-mnist")
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


def test_files_of_the_other_data_set_are_refused(isolated, make_mnist, trust_idx):
    """MNIST and Fashion-MNIST publish the same four names: the content tells which one a folder holds."""
    digits, clothes = isolated.tmp / "digits", isolated.tmp / "clothes"
    make_mnist(digits, seed=1)
    make_mnist(clothes, seed=2)
    trust_idx(digits, "mnist")
    trust_idx(clothes, "fashion-mnist")
    assert load_source("mnist", root=str(digits), download=False).name == "mnist"
    with pytest.raises(ChecksumError, match="is fashion-mnist's train-images-idx3-ubyte, not mnist's") as info:
        load_source("mnist", root=str(clothes), download=False)
    assert str(clothes / "train-images-idx3-ubyte.gz") in str(info.value)
    assert "Load it as 'fashion-mnist'" in str(info.value)
    with pytest.raises(ChecksumError, match="is mnist's train-images-idx3-ubyte, not fashion-mnist's"):
        load_source("fashion-mnist", root=str(digits), download=False)


def test_swapped_train_and_test_files_are_refused(isolated, make_mnist, trust_idx):
    folder = isolated.tmp / "swapped"
    make_mnist(folder, n_train=12, n_test=5)
    trust_idx(folder, "mnist")
    for kind in ("images-idx3", "labels-idx1"):
        train, test = folder / f"train-{kind}-ubyte.gz", folder / f"t10k-{kind}-ubyte.gz"
        train.rename(folder / "tmp")
        test.rename(train)
        (folder / "tmp").rename(test)
    with pytest.raises(DataError, match="holds 5 samples but mnist's train-images-idx3-ubyte has 12: .* swapped"):
        load_source("mnist", root=str(folder), download=False)


def test_modified_file_is_refused_naming_it(isolated, make_mnist, trust_idx):
    folder = isolated.tmp / "mine"
    arrays = make_mnist(folder)
    trust_idx(folder, "mnist")
    arrays["test_x"][0, 0, 0] ^= 1
    write_idx(folder / "t10k-images-idx3-ubyte.gz", arrays["test_x"])
    with pytest.raises(ChecksumError, match="not that of mnist's published t10k-images-idx3-ubyte") as info:
        load_source("mnist", root=str(folder), download=False)
    assert str(folder / "t10k-images-idx3-ubyte.gz") in str(info.value)


@pytest.mark.parametrize("copy", ["decompressed", "recompressed"])
def test_decompressed_or_recompressed_copies_are_recognised(isolated, make_mnist, trust_idx, copy):
    """The md5 of the IDX bytes identifies a file however it is compressed (Debian recompresses)."""
    published, local = isolated.tmp / "published", isolated.tmp / "local"
    arrays = make_mnist(published)
    trust_idx(published, "mnist")
    local.mkdir()
    for name in IDX_FILES:
        raw = gzip.decompress((published / name).read_bytes())
        if copy == "decompressed":
            (local / name.removesuffix(".gz")).write_bytes(raw)
        else:
            (local / name).write_bytes(gzip.compress(raw, compresslevel=1, mtime=123))
            assert (local / name).read_bytes() != (published / name).read_bytes()
    data = load_source("mnist", root=str(local), download=False)
    assert data.train_y.tolist() == arrays["train_y"].tolist()


def test_the_published_gz_is_accepted_by_its_own_md5(isolated, make_mnist, trust_idx, monkeypatch):
    folder = isolated.tmp / "mine"
    make_mnist(folder)
    files = trust_idx(folder, "mnist")
    monkeypatch.setitem(mnist.IDX_DATASETS, "mnist", tuple(dataclasses.replace(f, idx_md5="0" * 32) for f in files))
    assert load_source("mnist", root=str(folder), download=False).name == "mnist"


def test_each_file_version_is_hashed_once(isolated, make_mnist, trust_idx, monkeypatch):
    folder = isolated.tmp / "mine"
    arrays = make_mnist(folder)
    trust_idx(folder, "mnist")
    hashed = []
    counting = SimpleNamespace(md5=lambda data, **kw: hashed.append(len(data)) or hashlib.md5(data, **kw))
    monkeypatch.setattr(mnist, "hashlib", counting)
    load_source("mnist", root=str(folder), download=False)
    load_source("mnist", root=str(folder), download=False)
    assert len(hashed) == 4
    arrays["train_y"][0] = (arrays["train_y"][0] + 1) % 10  # a new version of one file: hashed again
    write_idx(folder / "train-labels-idx1-ubyte.gz", arrays["train_y"])
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte"):
        load_source("mnist", root=str(folder), download=False)
    assert len(hashed) == 5


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_not_served_as_mnist():
    with pytest.raises(ChecksumError, match="is fashion-mnist's train-images-idx3-ubyte, not mnist's"):
        load_source("mnist", root=str(DEBIAN_FASHION), download=False)
