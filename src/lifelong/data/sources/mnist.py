"""MNIST and Fashion-MNIST from their four IDX files (`.gz` as published, or decompressed).

Both data sets publish the same four file names, so every local file is verified before use: its
sample count, then the md5 of its IDX bytes (decompressed), which also identifies decompressed or
recompressed copies such as Debian's dataset-fashion-mnist. Digests are cached per file version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lifelong.core.errors import ChecksumError, DataError
from lifelong.core.registries import SOURCES
from lifelong.data.sources.base import SourceData
from lifelong.data.sources.download import file_md5
from lifelong.data.sources.idx import decode_idx, idx_content
from lifelong.data.sources.resolve import Location, require
from lifelong.data.sources.tensors import class_labels, unit_pixels

# train images, train labels, test images, test labels — the published names and sample counts
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
IDX_SAMPLES = (60000, 60000, 10000, 10000)


@dataclass(frozen=True)
class IdxFile:
    """One published IDX file: its name, its number of samples and two md5s that identify it."""

    name: str
    samples: int
    md5: str  # of the published `.gz` file
    idx_md5: str  # of its decompressed IDX bytes, whatever the compression of a local copy


def idx_files(md5s: tuple[str, ...], idx_md5s: tuple[str, ...]) -> tuple[IdxFile, ...]:
    """The four IdxFile of a data set, in IDX_FILES order."""
    return tuple(
        IdxFile(*row) for row in zip(IDX_FILES, IDX_SAMPLES, md5s, idx_md5s, strict=True)
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


# (resolved path, inode, mtime_ns, size) → md5 of the file's IDX bytes: each version hashed once
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _content(path: Path) -> tuple[bytes, str]:
    """A file's IDX bytes (decompressed) and their md5, from the cache when the file is unchanged."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    content = idx_content(path.read_bytes(), str(path))
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.md5(content, usedforsecurity=False).hexdigest()
    return content, _DIGESTS[key]


def _verify(path: Path, samples: int, digest: str, name: str, expected: IdxFile) -> None:
    """Refuse a local file that is not `expected`, the published file of data set `name`."""
    role = expected.name.removesuffix(".gz")
    if samples != expected.samples:
        raise DataError(
            f"{path}: holds {samples} samples but {name}'s {role} has {expected.samples}: the "
            f"training and test files are swapped, or the folder holds another data set. Put "
            f"{name}'s published files there, or delete them and load with download=True"
        )
    if digest == expected.idx_md5 or (path.suffix == ".gz" and file_md5(path) == expected.md5):
        return
    other = next(
        (
            (data_set, f.name.removesuffix(".gz"))
            for data_set, files in IDX_DATASETS.items()
            for f in files
            if f.idx_md5 == digest
        ),
        None,
    )
    if other is not None:
        raise ChecksumError(
            f"{path} is {other[0]}'s {other[1]}, not {name}'s {role}: the folder holds the wrong "
            f"files. Load it as {other[0]!r}, or pass root=DIR with {name}'s published files in "
            f"DIR or DIR/{name}"
        )
    raise ChecksumError(
        f"{path}: the md5 of its IDX content is {digest}, not that of {name}'s published {role} "
        f"({expected.idx_md5}): the file is corrupt, modified or of another data set. Delete it "
        f"and load with download=True, or put the published {expected.name} there"
    )


def load_idx_source(
    location: Location, class_names: tuple[str, ...], root: str | Path | None, download: bool
) -> SourceData:
    """Find (or download) the four IDX files of `location`, verify and decode them."""
    folder = require(location, root, download)
    paths = [idx_path(folder, f) for f in IDX_FILES]
    contents = [_content(p) for p in paths]
    train_x, train_y, test_x, test_y = (
        decode_idx(raw, str(p)) for (raw, _), p in zip(contents, paths, strict=True)
    )
    tx, ex = _images(train_x, paths[0]), _images(test_x, paths[2])
    ty = _labels(train_y, paths[1], len(tx), len(class_names))
    ey = _labels(test_y, paths[3], len(ex), len(class_names))
    for path, (_, digest), samples, expected in zip(
        paths, contents, (len(tx), len(ty), len(ex), len(ey)), IDX_DATASETS[location.name], strict=True
    ):
        _verify(path, samples, digest, location.name, expected)
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
# md5 of the published .gz files, from github.com/zalandoresearch/fashion-mnist (also torchvision's),
# and of their decompressed IDX bytes (as public loaders list them; Debian's recompressed .gz hold these)
FASHION_FILES = idx_files(
    (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
    (
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "9018921c3c673c538a1fc5bad174d6f9",
        "8181f5470baa50b63fa0f6fddb340f0a",
        "15d484375f8d13e6eb1aabb0c3f46965",
    ),
)
FASHION = Location(
    "fashion-mnist",
    files=tuple((f.name, f.md5) for f in FASHION_FILES),
    mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    present=idx_present,
    install_hint="apt-get install dataset-fashion-mnist",
)
# md5 of the published .gz files, as in torchvision (yann.lecun.com now refuses scripted downloads),
# and of the decompressed IDX bytes, as public loaders list them
MNIST_FILES = idx_files(
    (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    (
        "6bbc9ace898e44ae57da46a324031adb",
        "a25bea736e30d166cdddb491f175f624",
        "2646ac647ad5339dbf082846283269ea",
        "27ae3e4e09519cfbb04c329615203637",
    ),
)
MNIST = Location(
    "mnist",
    files=tuple((f.name, f.md5) for f in MNIST_FILES),
    mirror="https://ossci-datasets.s3.amazonaws.com/mnist",
    present=idx_present,
)
# every data set in IDX form, by Location name: a local file must be its own data set's
IDX_DATASETS: dict[str, tuple[IdxFile, ...]] = {"mnist": MNIST_FILES, "fashion-mnist": FASHION_FILES}


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
