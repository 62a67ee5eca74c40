"""Where sources are looked for, in which order, and what a missing data set says."""

from __future__ import annotations

import shutil

import pytest

from lifelong.core.errors import DatasetNotFoundError
from lifelong.data.sources import load_source
from lifelong.data.sources.mnist import FASHION, IDX_FILES
from lifelong.data.sources.resolve import locate, search_dirs


def test_search_order(isolated, monkeypatch):
    monkeypatch.setenv("LIFELONG_DATA", str(isolated.tmp / "env"))
    assert search_dirs("mnist", isolated.tmp / "r") == [
        isolated.tmp / "r",
        isolated.tmp / "r" / "mnist",
        isolated.tmp / "env" / "mnist",
        isolated.cache / "mnist",
        isolated.system / "mnist",
    ]
    monkeypatch.delenv("LIFELONG_DATA")
    assert search_dirs("mnist") == [isolated.cache / "mnist", isolated.system / "mnist"]


def test_root_beats_env_beats_cache_beats_system(isolated, make_mnist, trust_idx, monkeypatch):
    """Each place holds a different number of training images, so the loaded size says which won."""
    env = isolated.tmp / "env"
    monkeypatch.setenv("LIFELONG_DATA", str(env))
    places = [
        (isolated.tmp / "root", 3),
        (env / "fashion-mnist", 4),
        (isolated.cache / "fashion-mnist", 5),
        (isolated.system / "fashion-mnist", 6),
    ]
    for folder, n in places:
        make_mnist(folder, n_train=n)
    root = str(isolated.tmp / "root")
    for folder, n in places:
        trust_idx(folder, "fashion-mnist")
        assert load_source("fashion-mnist", root=root, download=False).train_x.shape[0] == n
        assert locate(FASHION, root) == folder
        shutil.rmtree(folder)
    assert locate(FASHION, root) is None


def test_root_may_hold_a_folder_named_after_the_data_set(isolated, make_mnist, trust_idx):
    make_mnist(isolated.tmp / "all" / "mnist", n_train=7)
    make_mnist(isolated.tmp / "all" / "fashion-mnist", n_train=8)
    trust_idx(isolated.tmp / "all" / "mnist", "mnist")
    trust_idx(isolated.tmp / "all" / "fashion-mnist", "fashion-mnist")
    root = str(isolated.tmp / "all")
    assert load_source("mnist", root=root, download=False).train_x.shape[0] == 7
    assert load_source("fmnist", root=root, download=False).train_x.shape[0] == 8


def test_incomplete_folder_is_skipped(isolated, make_mnist, trust_idx):
    make_mnist(isolated.tmp / "root", n_train=3)
    (isolated.tmp / "root" / IDX_FILES[3]).unlink()
    make_mnist(isolated.cache / "mnist", n_train=5)
    trust_idx(isolated.cache / "mnist", "mnist")
    root = str(isolated.tmp / "root")
    assert load_source("mnist", root=root, download=False).train_x.shape[0] == 5


def test_missing_fashion_says_how_to_get_it(isolated, monkeypatch):
    monkeypatch.setenv("LIFELONG_DATA", str(isolated.tmp / "env"))
    root = isolated.tmp / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        load_source("fashion-mnist", root=str(root), download=False)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    for folder in search_dirs("fashion-mnist", root):
        assert str(folder) in message
    assert "download=False" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "LIFELONG_DATA" in message and "LIFELONG_MIRROR_FASHION_MNIST" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" in message
    assert all(file in message for file in IDX_FILES)
    assert f"put the files in {root / 'fashion-mnist'}" in message
    assert "\n" not in message


def test_missing_without_root_points_at_the_cache(isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        load_source("cifar100", download=False)
    message = str(info.value)
    assert f"put the files in {isolated.cache / 'cifar100'}" in message
    assert "https://www.cs.toronto.edu/~kriz/" in message and "cifar-100-python.tar.gz" in message
    assert "apt-get" not in message  # no Debian package for CIFAR


def test_mirror_variable_changes_the_advertised_url(isolated, monkeypatch):
    monkeypatch.setenv("LIFELONG_MIRROR_MNIST", "http://example.invalid/mnist/")
    with pytest.raises(DatasetNotFoundError, match="from http://example.invalid/mnist/ and"):
        load_source("mnist", download=False)
