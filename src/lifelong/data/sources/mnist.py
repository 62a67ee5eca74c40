"""MNIST and Fashion-MNIST from their four IDX files (`.gz` as published, or decompressed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lifelong.core.errors import DataError
from lifelong.core.registries import SOURCES
from lifelong.data.sources.base import SourceData
from lifelong.data.sources.idx import read_idx
from lifelong.data.sources.resolve import Location, require
from lifelong.data.sources.tensors import class_labels, unit_pixels

# train images, train labels, test images, test labels — the published names
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def idx_path(folder: Path, published: str) -> Path | None:
    """The file `published` in `folder`, compressed as published or decompressed, or None."""
    return next(
        (p for p in (folder / published, folder / published.removesuffix(".gz")) if p.is_file()),
        None,
    )


def idx_present(folder: Path) -> bool:
    """True when `folder` holds all four IDX files."""
    return all(idx_path(folder, f) is not None for f in IDX_FILES)


def _images(array: np.ndarray, where: Path) -> torch.Tensor:
    if array.ndim != 3 or array.dtype != np.uint8:
        raise DataError(
            f"{where}: expected uint8 images (N, H, W), got {array.dtype} {array.shape}"
        )
    return unit_pixels(array).unsqueeze(1)


def _labels(array: np.ndarray, where: Path, n_images: int, n_classes: int) -> torch.Tensor:
    if array.shape != (n_images,):
        raise DataError(
            f"{where}: expected {n_images} labels (one per image), got shape {array.shape}"
        )
    return class_labels(array, n_classes, str(where))


def load_idx_source(
    location: Location, class_names: tuple[str, ...], root: str | Path | None, download: bool
) -> SourceData:
    """Find (or download) the four IDX files of `location` and decode them into a SourceData."""
    folder = require(location, root, download)
    paths = [idx_path(folder, f) for f in IDX_FILES]
    train_x, train_y, test_x, test_y = (read_idx(p) for p in paths)
    tx, ex = _images(train_x, paths[0]), _images(test_x, paths[2])
    ty = _labels(train_y, paths[1], len(tx), len(class_names))
    ey = _labels(test_y, paths[3], len(ex), len(class_names))
    return SourceData(location.name, tx, ty, ex, ey, class_names)


FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# md5 of the published files, from github.com/zalandoresearch/fashion-mnist (also torchvision's)
FASHION_MD5 = (
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
)
FASHION = Location(
    "fashion-mnist",
    files=tuple(zip(IDX_FILES, FASHION_MD5, strict=True)),
    mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    present=idx_present,
    install_hint="apt-get install dataset-fashion-mnist",
)
# md5 of the published files, as in torchvision; yann.lecun.com now refuses scripted downloads
MNIST_MD5 = (
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
)
MNIST = Location(
    "mnist",
    files=tuple(zip(IDX_FILES, MNIST_MD5, strict=True)),
    mirror="https://ossci-datasets.s3.amazonaws.com/mnist",
    present=idx_present,
)


@SOURCES.register(
    "fashion-mnist",
    aliases=("fashion_mnist", "fmnist", "FashionMNIST"),
    description="Zalando Fashion-MNIST, 28x28 grey clothing images (60000 train / 10000 test)",
    location=FASHION,
)
def fashion_mnist(root: str | None = None, download: bool = True) -> SourceData:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 10 clothes, inputs (N, 1, 28, 28) in [0, 1]."""
    return load_idx_source(FASHION, FASHION_CLASSES, root, download)


@SOURCES.register(
    "mnist",
    description="MNIST handwritten digits, 28x28 grey (60000 train / 10000 test)",
    location=MNIST,
)
def mnist(root: str | None = None, download: bool = True) -> SourceData:
    """MNIST (LeCun, Bottou, Bengio & Haffner, 1998): digits 0-9, (N, 1, 28, 28) in [0, 1]."""
    return load_idx_source(MNIST, tuple(str(d) for d in range(10)), root, download)
