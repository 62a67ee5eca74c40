"""CIFAR-10/100 sources: generated archives and folders, layout of pixels, labels, refusals."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from lifelong.core.errors import DataError
from lifelong.data.sources import load_source
from lifelong.data.sources.cifar import CIFAR10_LAYOUT, CIFAR100_LAYOUT

TEN = [f"name_{i}" for i in range(10)]


def _expected(members, names):
    x = np.concatenate([members[n]["data"] for n in names]).astype(np.float32) / 255.0
    return torch.from_numpy(x).reshape(-1, 3, 32, 32)


@pytest.mark.parametrize("archive", [True, False])
def test_cifar10_from_archive_or_extracted_folder(isolated, make_cifar, archive):
    folder = isolated.tmp / "c10"
    members = make_cifar(folder, CIFAR10_LAYOUT, n=4, archive=archive)
    data = load_source("cifar10", root=str(folder), download=False)
    assert data.name == "cifar10" and data.class_names == tuple(f"class_{i}" for i in range(10))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert torch.equal(data.train_x, _expected(members, CIFAR10_LAYOUT.train))
    assert torch.equal(data.test_x, _expected(members, ("test_batch",)))
    labels = [y for n in CIFAR10_LAYOUT.train for y in members[n]["labels"]]
    assert data.train_y.tolist() == labels


def test_root_may_be_the_extracted_folder_itself(isolated, make_cifar):
    inner = isolated.tmp / "c10" / CIFAR10_LAYOUT.folder
    make_cifar(isolated.tmp / "c10", CIFAR10_LAYOUT, archive=False)
    assert load_source("cifar-10", root=str(inner), download=False).train_x.shape[0] == 20


def test_row_layout_is_channel_then_row_then_column(isolated, cifar_writer):
    """A CIFAR row holds 1024 red, then 1024 green, then 1024 blue values, each row-major."""
    data = np.zeros((1, 3072), np.uint8)
    data[0, 2 * 1024 + 5 * 32 + 7] = 255  # blue, row 5, column 7
    batch = {"data": data, "labels": [0]}
    raw = {m: pickle.dumps(batch) for m in (*CIFAR10_LAYOUT.train, *CIFAR10_LAYOUT.test)}
    raw["batches.meta"] = pickle.dumps({"label_names": TEN})
    cifar_writer(isolated.tmp / "c", CIFAR10_LAYOUT, raw)
    x = load_source("cifar10", root=str(isolated.tmp / "c"), download=False).train_x
    assert x[0, 2, 5, 7].item() == 1.0 and x[0].sum().item() == 1.0


def test_cifar100_uses_fine_labels_and_fine_names(isolated, make_cifar):
    folder = isolated.tmp / "c100"
    members = make_cifar(folder, CIFAR100_LAYOUT, n=6, n_classes=100)
    data = load_source("cifar100", root=str(folder), download=False)
    assert data.n_classes == 100 and data.class_names[:2] == ("class_0", "class_1")
    assert data.train_y.tolist() == members["train"]["fine_labels"]
    assert data.test_y.tolist() == members["test"]["fine_labels"]
    assert data.train_y.tolist() != members["train"]["coarse_labels"]
    assert data.input_shape == (3, 32, 32) and data.train_x.shape[0] == 6


def test_python2_pickles_and_bytes_keys_load(isolated, cifar_writer, py2_pickle):
    rng = np.random.default_rng(1)
    batches = {m: rng.integers(0, 256, (2, 3072), dtype=np.uint8) for m in ("train", "test")}
    raw = {m: py2_pickle(d, [7, 99], "fine_labels") for m, d in batches.items()}
    raw["meta"] = pickle.dumps({b"fine_label_names": [f"n{i}".encode() for i in range(100)]})
    cifar_writer(isolated.tmp / "c", CIFAR100_LAYOUT, raw)
    data = load_source("cifar100", root=str(isolated.tmp / "c"), download=False)
    assert data.train_y.tolist() == [7, 99] and data.class_names[99] == "n99"
    assert torch.equal(data.test_x.flatten(1), torch.from_numpy(batches["test"]).float() / 255)


def test_malicious_member_is_refused_and_never_runs(isolated, cifar_writer):
    marker = isolated.tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    good = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
    raw = {m: good for m in (*CIFAR10_LAYOUT.train, *CIFAR10_LAYOUT.test)}
    raw["data_batch_3"] = pickle.dumps({"data": Evil(), "labels": [0]})
    raw["batches.meta"] = pickle.dumps({"label_names": TEN})
    cifar_writer(isolated.tmp / "c", CIFAR10_LAYOUT, raw)
    with pytest.raises(DataError, match=r"data_batch_3: refusing to unpickle (posix|os)\.system"):
        load_source("cifar10", root=str(isolated.tmp / "c"), download=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("batch", "fragment"),
    [
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "must hold 2 integers"),
        ({"data": np.zeros((2, 100), np.uint8), "labels": [0, 0]}, r"uint8 array \(N, 3072\)"),
        ({"data": np.zeros((1, 3072), np.float32), "labels": [0]}, r"uint8 array \(N, 3072\)"),
        ({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, r"outside \[0, 10\)"),
        ({"labels": [0]}, r"missing keys \['data'\]"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_malformed_batches_raise_data_error(isolated, cifar_writer, batch, fragment):
    raw = {m: pickle.dumps(batch) for m in (*CIFAR10_LAYOUT.train, *CIFAR10_LAYOUT.test)}
    raw["batches.meta"] = pickle.dumps({"label_names": TEN})
    cifar_writer(isolated.tmp / "c", CIFAR10_LAYOUT, raw)
    with pytest.raises(DataError, match=fragment):
        load_source("cifar10", root=str(isolated.tmp / "c"), download=False)


def test_archive_missing_a_member_raises(isolated, cifar_writer):
    good = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
    raw = {m: good for m in CIFAR10_LAYOUT.train}  # no test_batch, no meta
    cifar_writer(isolated.tmp / "c", CIFAR10_LAYOUT, raw)
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/batches.meta, .*test_batch"):
        load_source("cifar10", root=str(isolated.tmp / "c"), download=False)


def test_corrupt_archive_raises(isolated):
    (isolated.tmp / "c").mkdir()
    (isolated.tmp / "c" / CIFAR10_LAYOUT.archive).write_bytes(b"\x1f\x8b not an archive")
    with pytest.raises(DataError, match="unreadable archive"):
        load_source("cifar10", root=str(isolated.tmp / "c"), download=False)


@pytest.mark.parametrize(
    ("layout", "names", "fragment"),
    [
        (CIFAR10_LAYOUT, [f"n{i}" for i in range(100)], "must list 10 class names as strings, got a list of 100"),
        (CIFAR10_LAYOUT, "abcdefghij", "must list 10 class names as strings, got a str of 10"),
        (CIFAR10_LAYOUT, list(range(10)), "must list 10 class names as strings, got a list of 10"),
        (CIFAR10_LAYOUT, None, "must list 10 class names as strings, got a NoneType"),
        (CIFAR100_LAYOUT, TEN, "must list 100 class names as strings, got a list of 10"),
    ],
    ids=["cifar10-100-names", "cifar10-a-string", "cifar10-ints", "cifar10-none", "cifar100-10-names"],
)
def test_class_names_must_be_the_expected_number_of_strings(isolated, cifar_writer, layout, names, fragment):
    batch = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), layout.label_key: [0]})
    raw = {m: batch for m in (*layout.train, *layout.test)}
    raw[layout.meta] = pickle.dumps({layout.names_key: names})
    cifar_writer(isolated.tmp / "c", layout, raw)
    with pytest.raises(DataError, match=fragment) as info:
        load_source("cifar10" if layout is CIFAR10_LAYOUT else "cifar100", root=str(isolated.tmp / "c"), download=False)
    assert layout.meta in str(info.value) and layout.names_key in str(info.value)
