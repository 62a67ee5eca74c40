"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from the python-version archives, unpickling no code.

A folder holds the data when it contains the published archive (`cifar-10-python.tar.gz`), the
extracted folder (`cifar-10-batches-py/`), or is that extracted folder itself. Members are read
straight out of the archive: nothing is extracted to disk.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.core.errors import DataError
from lifelong.core.registries import SOURCES
from lifelong.data.sources.base import SourceData
from lifelong.data.sources.resolve import Location, require
from lifelong.data.sources.safe_pickle import load_pickle
from lifelong.data.sources.tensors import class_labels, unit_pixels

_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Member names and dict keys of one CIFAR python-version archive."""

    archive: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    n_classes: int

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.train, *self.test, self.meta)


def extracted_dir(folder: Path, layout: CifarLayout) -> Path | None:
    """The extracted folder under (or at) `folder` holding every member, or None."""
    for d in (folder / layout.folder, folder):
        if all((d / m).is_file() for m in layout.members):
            return d
    return None


def cifar_present(layout: CifarLayout, folder: Path) -> bool:
    """True when `folder` holds the archive or the extracted files."""
    return (folder / layout.archive).is_file() or extracted_dir(folder, layout) is not None


def read_members(folder: Path, layout: CifarLayout) -> dict[str, tuple[bytes, str]]:
    """Every member's bytes and a description of where it came from, from disk or the archive."""
    extracted = extracted_dir(folder, layout)
    if extracted is not None:
        return {m: ((extracted / m).read_bytes(), str(extracted / m)) for m in layout.members}
    archive = folder / layout.archive
    wanted = {f"{layout.folder}/{m}": m for m in layout.members}
    found: dict[str, tuple[bytes, str]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:  # one sequential pass: the gzip stream is never rewound
                member = wanted.get(info.name.removeprefix("./"))
                if member is not None and info.isfile():
                    found[member] = (tar.extractfile(info).read(), f"{archive}:{info.name}")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(
            f"{archive}: unreadable archive ({err}); delete it and fetch it again"
        ) from err
    missing = sorted(set(layout.members) - set(found))
    if missing:
        lacks = ", ".join(f"{layout.folder}/{m}" for m in missing)
        raise DataError(f"{archive}: the archive lacks {lacks}; delete it and fetch it again")
    return found


def _as_dict(obj: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """A pickled dict with str keys (bytes keys appear when re-pickled after encoding="bytes")."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    out = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in keys if k not in out]
    if missing:
        raise DataError(f"{where}: missing keys {missing} (has {sorted(map(str, out))})")
    return out


def _batch(raw: bytes, where: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 3072) uint8 pixels and N labels of one pickled batch."""
    batch = _as_dict(load_pickle(raw, where), where, ("data", label_key))
    data, labels = batch["data"], np.asarray(batch[label_key])
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _PIXELS
    ):
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{where}: 'data' must be a uint8 array (N, {_PIXELS}), got {shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{where}: {label_key!r} must hold {len(data)} integers, got {labels.shape}"
        )
    return data, labels


def _split(
    members: dict[str, tuple[bytes, str]], names: tuple[str, ...], label_key: str, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate batches into float (N, 3, 32, 32) inputs in [0, 1] and int64 labels."""
    parts = [_batch(*members[n], label_key) for n in names]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    where = ", ".join(members[n][1] for n in names)
    return unit_pixels(data.reshape(-1, 3, 32, 32)), class_labels(labels, n_classes, where)


def _class_names(raw: Any, where: str, layout: CifarLayout) -> tuple[str, ...]:
    """The class names of a meta member: a list of exactly `layout.n_classes` str (or bytes)."""
    if not (
        isinstance(raw, list)
        and len(raw) == layout.n_classes
        and all(isinstance(n, str | bytes) for n in raw)
    ):
        got = type(raw).__name__ + (f" of {len(raw)}" if isinstance(raw, list | tuple | str) else "")
        raise DataError(
            f"{where} must list {layout.n_classes} class names as strings, got a {got}: the member is "
            f"corrupt or of another data set; delete {layout.archive} (or {layout.folder}/) and fetch it again"
        )
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in raw)


def load_cifar(
    location: Location, layout: CifarLayout, root: str | Path | None, download: bool
) -> SourceData:
    """Find (or download) a CIFAR archive and decode train/test tensors and the class names."""
    members = read_members(require(location, root, download), layout)
    meta = _as_dict(
        load_pickle(*members[layout.meta]), members[layout.meta][1], (layout.names_key,)
    )
    names = _class_names(meta[layout.names_key], f"{members[layout.meta][1]}: {layout.names_key!r}", layout)
    train_x, train_y = _split(members, layout.train, layout.label_key, len(names))
    test_x, test_y = _split(members, layout.test, layout.label_key, len(names))
    return SourceData(location.name, train_x, train_y, test_x, test_y, names)


CIFAR10_LAYOUT = CifarLayout(
    archive="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    meta="batches.meta",
    label_key="labels",
    names_key="label_names",
    n_classes=10,
)
CIFAR100_LAYOUT = CifarLayout(
    archive="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    train=("train",),
    test=("test",),
    meta="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    n_classes=100,
)
_KRIZ = "https://www.cs.toronto.edu/~kriz"  # the md5s are published on its cifar.html page
CIFAR10 = Location(
    "cifar10",
    files=((CIFAR10_LAYOUT.archive, "c58f30108f718f92721af3b95e74349a"),),
    mirror=_KRIZ,
    present=partial(cifar_present, CIFAR10_LAYOUT),
)
CIFAR100 = Location(
    "cifar100",
    files=((CIFAR100_LAYOUT.archive, "eb9058c3a382ffc7106e4002c42a8d85"),),
    mirror=_KRIZ,
    present=partial(cifar_present, CIFAR100_LAYOUT),
)


@SOURCES.register(
    "cifar10",
    aliases=("cifar-10", "cifar_10"),
    description="CIFAR-10, 32x32 colour images of 10 classes (50000 train / 10000 test)",
    location=CIFAR10,
)
def cifar10(root: str | None = None, download: bool = True) -> SourceData:
    """CIFAR-10 (Krizhevsky, 2009): 10 classes, inputs (N, 3, 32, 32) in [0, 1]."""
    return load_cifar(CIFAR10, CIFAR10_LAYOUT, root, download)


@SOURCES.register(
    "cifar100",
    aliases=("cifar-100", "cifar_100"),
    description="CIFAR-100, 32x32 colour images of 100 fine classes (50000 train / 10000 test)",
    location=CIFAR100,
)
def cifar100(root: str | None = None, download: bool = True) -> SourceData:
    """CIFAR-100 (Krizhevsky, 2009): 100 fine labels and names, inputs (N, 3, 32, 32) in [0, 1]."""
    return load_cifar(CIFAR100, CIFAR100_LAYOUT, root, download)
