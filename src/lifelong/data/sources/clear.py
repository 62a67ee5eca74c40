"""CLEAR (Lin et al. 2021, "The CLEAR Benchmark: Continual LEArning on Real-World Imagery"):
YFCC100M images whose classes evolve over ten time buckets spanning 2004-2014.

CLEAR-10 has 11 classes (10 concepts and BACKGROUND), CLEAR-100 has 100; both are published in
the same layout, as a training set and a held-out test set. A folder holds them when it has
- `train_image_only/` (from `clear10-train-image-only.zip`; the `train/` folder of the larger
  archive with unlabeled metadata is accepted too) or the zip itself, read in place, and
- `test/` (from `clear10-test.zip`) or that zip.
Each of the two folders has `class_names.txt` (one class a line, in label order) and
`labeled_images/<bucket>/<class>/<id>.jpg` for buckets 1-10. A sample's bucket is its domain:
`domains-clear10` trains on bucket i and tests on bucket i's held-out images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from lifelong.core.errors import DataError
from lifelong.core.registries import SOURCES
from lifelong.data.sources.base import SourceData
from lifelong.data.sources.images import channels_first, check_size, decode_files
from lifelong.data.sources.resolve import Location, require
from lifelong.data.sources.trees import Tree, open_tree

CLASS_FILE = "class_names.txt"
TRAIN_DIRS, TEST_DIRS = ("train_image_only", "train"), ("test",)
# an image file, not a hidden one (macOS leaves `._<name>` resource forks beside extracted files)
_IMAGE = re.compile(r"labeled_images/([^/]+)/([^/]+)/[^/.][^/]*\.(?:jpe?g|png)", re.IGNORECASE)

Record = tuple[int, int, str]  # bucket, label, file name in its tree
VARIANT_CLASSES = {"clear10": 11, "clear100": 100}  # both extract to the same folder names


@dataclass(frozen=True)
class ClearLayout:
    """The published archives of one CLEAR variant."""

    train_archive: str
    test_archive: str

    @property
    def parts(self) -> tuple[tuple[tuple[str, ...], str], ...]:
        """(accepted extracted folders, archive) of the training and of the test set."""
        return (TRAIN_DIRS, self.train_archive), (TEST_DIRS, self.test_archive)


def extracted(folder: Path, dirs: tuple[str, ...]) -> Path | None:
    """The first of `folder/<dir>` holding `labeled_images/`, or None."""
    return next((folder / d for d in dirs if (folder / d / "labeled_images").is_dir()), None)


def clear_present(layout: ClearLayout, folder: Path) -> bool:
    """True when `folder` holds the training and the test set, each extracted or zipped."""
    return all(extracted(folder, dirs) is not None or (folder / archive).is_file()
               for dirs, archive in layout.parts)


def read_class_names(tree: Tree, names: list[str]) -> tuple[str, ...]:
    """The classes listed in `class_names.txt`, in label order."""
    if CLASS_FILE not in names:
        raise DataError(f"{tree.where}: no {CLASS_FILE}; the folder is not a CLEAR split as published")
    try:
        text = tree.read(CLASS_FILE).decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{tree.describe(CLASS_FILE)}: not UTF-8 text ({err})") from err
    classes = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not classes or len(set(classes)) != len(classes):
        raise DataError(f"{tree.describe(CLASS_FILE)}: expected distinct class names, one a line, "
                        f"got {list(classes)}")
    return classes


def check_variant(name: str, classes: tuple[str, ...], where: str) -> None:
    """Refuse the other CLEAR variant's files (CLEAR-10 and CLEAR-100 extract to the same folders)."""
    other = next((v for v, n in VARIANT_CLASSES.items() if v != name and n == len(classes)), None)
    if other is not None:
        raise DataError(f"{where}: {CLASS_FILE} lists {len(classes)} classes, as {other} does, not the "
                        f"{VARIANT_CLASSES[name]} of {name}; load it as {other!r}, or point root at the "
                        f"{name} files")


def index_images(tree: Tree, names: list[str], classes: tuple[str, ...]) -> list[Record]:
    """Every labeled image of `tree` as (bucket, label, name), sorted."""
    label = {c: i for i, c in enumerate(classes)}
    records = []
    for name in names:
        match = _IMAGE.fullmatch(name)
        if match is None:
            continue
        bucket, cls = match.groups()
        if not bucket.isdigit():
            raise DataError(f"{tree.describe(name)}: bucket folder {bucket!r} is not a number")
        if cls not in label:
            raise DataError(f"{tree.describe(name)}: class {cls!r} is not in {CLASS_FILE} {list(classes)}")
        records.append((int(bucket), label[cls], name))
    if not records:
        raise DataError(f"{tree.where}: no images labeled_images/<bucket>/<class>/*.jpg")
    return sorted(records)


def check_buckets(train: list[Record], test: list[Record], classes: tuple[str, ...],
                  where: tuple[str, str]) -> list[int]:
    """The buckets, after checking both sets have the same ones and every class in each."""
    buckets = sorted({r[0] for r in train})
    if sorted({r[0] for r in test}) != buckets:
        raise DataError(f"{where[1]}: test buckets {sorted({r[0] for r in test})} differ from the "
                        f"training buckets {buckets} in {where[0]}")
    for records, place in zip((train, test), where, strict=True):
        present = {(b, c) for b, c, _ in records}
        missing = [(b, c) for b in buckets for c in range(len(classes)) if (b, c) not in present]
        if missing:
            b, c = missing[0]
            raise DataError(f"{place}: labeled_images/{b}/{classes[c]}/ has no images ({len(missing)} "
                            f"bucket/class folders missing); the data set is incomplete — fetch it again")
    return buckets


def load_clear(location: Location, layout: ClearLayout, root: str | Path | None, download: bool,
               image_size: int) -> SourceData:
    """Find (or download) a CLEAR variant and decode both sets at `image_size`."""
    size = check_size(image_size)
    folder = require(location, root, download)
    (train_dirs, train_zip), (test_dirs, test_zip) = layout.parts
    with (open_tree(extracted(folder, train_dirs), folder / train_zip, train_dirs) as train_tree,
          open_tree(extracted(folder, test_dirs), folder / test_zip, test_dirs) as test_tree):
        train_names, test_names = train_tree.names(), test_tree.names()
        classes = read_class_names(train_tree, train_names)
        check_variant(location.name, classes, train_tree.where)
        if read_class_names(test_tree, test_names) != classes:
            raise DataError(f"{test_tree.where}: {CLASS_FILE} differs from {train_tree.where}'s; "
                            f"the two sets do not belong together")
        train = index_images(train_tree, train_names, classes)
        test = index_images(test_tree, test_names, classes)
        buckets = check_buckets(train, test, classes, (train_tree.where, test_tree.where))
        train_x = decode_files(train_tree, [r[2] for r in train], size, f"decoding {location.name}")
        test_x = decode_files(test_tree, [r[2] for r in test], size, f"decoding {location.name}")
    domain = {b: i for i, b in enumerate(buckets)}

    def ints(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int64)

    return SourceData(
        location.name, channels_first(train_x), ints([r[1] for r in train]), channels_first(test_x),
        ints([r[1] for r in test]), classes, ints([domain[r[0]] for r in train]),
        ints([domain[r[0]] for r in test]), tuple(f"bucket {b}" for b in buckets),
    )


CLEAR10_LAYOUT = ClearLayout("clear10-train-image-only.zip", "clear10-test.zip")
CLEAR100_LAYOUT = ClearLayout("clear100-train-image-only.zip", "clear100-test.zip")
# the authors' download page (linzhiqiu.gitbook.io/the-clear-benchmark) links these archives but
# publishes no checksum; the md5s are those recorded by Amazon's Renate
# (src/renate/benchmark/datasets/vision_datasets.py, CLEARDataModule.md5s)
_S3 = "https://clear-challenge.s3.us-east-2.amazonaws.com"
CLEAR10 = Location(
    "clear10",
    files=((CLEAR10_LAYOUT.train_archive, "5171f720810d60b471c308dee595d430"),
           (CLEAR10_LAYOUT.test_archive, "bf9a85bfb78fe742c7ed32648c9a3275")),
    mirror=_S3,
    present=partial(clear_present, CLEAR10_LAYOUT),
)
CLEAR100 = Location(
    "clear100",
    files=((CLEAR100_LAYOUT.train_archive, "ea85cdba9efcb3abf77eaab5554052c8"),
           (CLEAR100_LAYOUT.test_archive, "e160815fb5fd4bc71dacd339ff41e6a9")),
    mirror=_S3,
    present=partial(clear_present, CLEAR100_LAYOUT),
)


@SOURCES.register(
    "clear10",
    aliases=("clear-10", "clear_10"),
    description="CLEAR-10, YFCC100M images of 11 classes in 10 time buckets (2004-2014), resized",
    location=CLEAR10,
)
def clear10(root: str | None = None, download: bool = True, image_size: int = 32) -> SourceData:
    """CLEAR-10 (Lin et al. 2021): 11 classes, (N, 3, image_size, image_size) in [0, 1], domains = buckets."""
    return load_clear(CLEAR10, CLEAR10_LAYOUT, root, download, image_size)


@SOURCES.register(
    "clear100",
    aliases=("clear-100", "clear_100"),
    description="CLEAR-100, YFCC100M images of 100 classes in 10 time buckets (2004-2014), resized",
    location=CLEAR100,
)
def clear100(root: str | None = None, download: bool = True, image_size: int = 32) -> SourceData:
    """CLEAR-100 (Lin et al. 2021): 100 classes, (N, 3, image_size, image_size) in [0, 1], domains = buckets."""
    return load_clear(CLEAR100, CLEAR100_LAYOUT, root, download, image_size)
