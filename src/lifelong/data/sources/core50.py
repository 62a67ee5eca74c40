"""CORe50 (Lomonaco & Maltoni 2017, "CORe50: a New Dataset and Benchmark for Continuous Object
Recognition"): 50 hand-held objects of 10 categories filmed in 11 sessions, 164,866 images.

A folder holds the data in any published form, used in this order:
1. `core50_imgs.npz` (one uint8 array `x`, (N, 128, 128, 3)) beside `paths.pkl` (the list of each
   row's image path): the authors' NumPy form, streamed block by block, never loaded whole;
2. the extracted `core50_128x128/` folder of PNGs (or the folder itself holding `s1/` ... `s11/`);
3. the archive `core50_128x128.zip`, read in place (the one file downloaded).
Each path `s<session>/o<object>/C_<ss>_<oo>_<fff>.png` gives the image's object and session. The
standard protocol trains on sessions 1, 2, 4, 5, 6, 8, 9, 11 and tests on 3, 7, 10; a sample's
session is its domain, so `domains-core50` is the NI scenario (one experience per training
session, all tested on the fixed test sessions). `split-core50` splits the objects over the
training sessions; with `classes_per_experience=[10] + [5] * 8` and a `seed` it has the NC
protocol's shape (9 batches, 10 objects then 8 × 5) in a seeded class order; the official runs'
orders are in the authors' batch file lists, which are not read. NI+NC (NICv2) is not built.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lifelong.core.checks import check_list
from lifelong.core.errors import ConfigError, DataError
from lifelong.core.registries import SOURCES
from lifelong.data.sources.base import SourceData
from lifelong.data.sources.images import channels_first, check_size, decode_files, fit, progress
from lifelong.data.sources.npz import open_npz_array
from lifelong.data.sources.resolve import Location, require
from lifelong.data.sources.safe_pickle import load_pickle
from lifelong.data.sources.trees import Tree, open_tree

ARCHIVE, IMAGE_DIR, NPZ, PATHS = "core50_128x128.zip", "core50_128x128", "core50_imgs.npz", "paths.pkl"
# the category of objects o1-o5, o6-o10, ... (the authors' ordered class list)
CATEGORIES = ("plug_adapter", "mobile_phone", "scissor", "light_bulb", "can", "glass", "ball",
              "marker", "cup", "remote_control")
OBJECTS = tuple(f"{category}{k}" for category in CATEGORIES for k in range(1, 6))
SESSIONS = tuple(f"s{k}" for k in range(1, 12))
TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)
TEST_SESSIONS = (3, 7, 10)
LABELS = {"object": (OBJECTS, 1), "category": (CATEGORIES, 5)}  # names, objects per label
_PATH = re.compile(r"(?:.*/)?s(\d+)/o(\d+)/C_(\d+)_(\d+)_(\d+)\.png")
_SESSION_DIR = re.compile(r"s\d+")

Record = tuple[int, int, int, int]  # session, object, frame, index into the form's paths


def parse_path(path: str, where: str) -> tuple[int, int, int] | None:
    """(session, object, frame) of a CORe50 image path, None for any other file."""
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    session, obj, file_session, file_obj, frame = map(int, match.groups())
    if (session, obj) != (file_session, file_obj):
        raise DataError(f"{where}: {path!r} lies in s{session}/o{obj} but is named for session "
                        f"{file_session}, object {file_obj}; the files are not as published")
    if not 1 <= session <= len(SESSIONS) or not 1 <= obj <= len(OBJECTS):
        raise DataError(f"{where}: {path!r} names session {session}, object {obj}; CORe50 has "
                        f"sessions 1-{len(SESSIONS)} and objects 1-{len(OBJECTS)}")
    return session, obj, frame


def _image_dir(folder: Path) -> Path | None:
    """The extracted image folder: `folder/core50_128x128`, or `folder` itself holding `s<k>/`."""
    return next((d for d in (folder / IMAGE_DIR, folder) if d.is_dir() and any(
        p.is_dir() and _SESSION_DIR.fullmatch(p.name) for p in d.iterdir())), None)


def core50_present(folder: Path) -> bool:
    """True when `folder` holds the npz and its paths, the extracted images, or the archive."""
    return ((folder / NPZ).is_file() and (folder / PATHS).is_file()) or (
        _image_dir(folder) is not None or (folder / ARCHIVE).is_file())


class NpzForm:
    """`core50_imgs.npz` rows named by `paths.pkl`."""

    strict = True  # every row must be a CORe50 image

    def __init__(self, folder: Path) -> None:
        self.npz, self.where = folder / NPZ, str(folder / PATHS)
        paths = load_pickle((folder / PATHS).read_bytes(), self.where)
        if not isinstance(paths, list | tuple) or not all(isinstance(p, str) for p in paths):
            raise DataError(f"{self.where}: expected a pickled list of image paths, got "
                            f"{type(paths).__name__}")
        self.paths: list[str] = list(paths)
        with open_npz_array(self.npz, "x") as x:
            if x.dtype != np.uint8 or len(x.shape) != 4 or x.shape[3] != 3:
                raise DataError(f"{x.where}: expected uint8 images (N, H, W, 3), got {x.dtype} {x.shape}")
            if x.shape[0] != len(self.paths):
                raise DataError(f"{x.where} holds {x.shape[0]} images but {self.where} names "
                                f"{len(self.paths)}; the two files do not belong together")

    def decode(self, wanted: list[int], size: int) -> np.ndarray:
        slot = {index: k for k, index in enumerate(wanted)}
        out = np.empty((len(wanted), size, size, 3), dtype=np.uint8)
        with open_npz_array(self.npz, "x") as x:
            row = 0
            for block in progress(x.blocks(256), "decoding CORe50", total=-(-x.shape[0] // 256)):
                for image in block:
                    if row in slot:
                        out[slot[row]] = fit(Image.fromarray(image), size)
                    row += 1
        return out


class TreeForm:
    """PNG files in the extracted folder or in the archive."""

    strict = False  # other files (notes, hidden files) may lie beside the images

    def __init__(self, tree: Tree) -> None:
        self.tree, self.where, self.paths = tree, tree.where, tree.names()

    def decode(self, wanted: list[int], size: int) -> np.ndarray:
        return decode_files(self.tree, [self.paths[i] for i in wanted], size, "decoding CORe50")


@contextmanager
def open_form(folder: Path) -> Iterator[NpzForm | TreeForm]:
    """The first published form found in `folder` (see the module docstring for the order)."""
    if (folder / NPZ).is_file() and (folder / PATHS).is_file():
        yield NpzForm(folder)
        return
    with open_tree(_image_dir(folder), folder / ARCHIVE, (IMAGE_DIR,)) as tree:
        yield TreeForm(tree)


def index_frames(form: NpzForm | TreeForm) -> list[Record]:
    """Every CORe50 image of `form` as (session, object, frame, index)."""
    records = []
    for i, path in enumerate(form.paths):
        parsed = parse_path(path, form.where)
        if parsed is None and form.strict:
            raise DataError(f"{form.where}: entry {i} ({path!r}) is not a CORe50 image path "
                            f"s<session>/o<object>/C_<ss>_<oo>_<fff>.png")
        if parsed is not None:
            records.append((*parsed, i))
    return records


def check_complete(records: list[Record], sessions: Sequence[int], where: str) -> None:
    """Every requested session must hold images of all 50 objects, as the published data does."""
    seen: dict[int, set[int]] = {}
    for session, obj, _, _ in records:
        seen.setdefault(session, set()).add(obj)
    for session in sorted(sessions):
        missing = [o for o in range(1, len(OBJECTS) + 1) if o not in seen.get(session, ())]
        if missing:
            shown = ", ".join(f"o{o} ({OBJECTS[o - 1]})" for o in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(f"{where}: session {session} (s{session}/) has no images of {shown}"
                            f"{more}; the data set is incomplete — fetch it again")


def check_sessions(train: Sequence[int], test: Sequence[int]) -> tuple[list[int], list[int]]:
    """Known, non-empty and disjoint training and test sessions."""
    train, test = (check_list(f"core50: {what}", sessions, "a list of session numbers (1-11)")
                   for what, sessions in (("train_sessions", train), ("test_sessions", test)))
    unknown = [s for s in dict.fromkeys(train + test)
               if not isinstance(s, int | np.integer) or not 1 <= s <= len(SESSIONS)]
    if unknown:
        raise ConfigError(f"core50: unknown session(s) {unknown}; CORe50 has sessions 1-11 (the "
                          f"standard protocol trains on {TRAIN_SESSIONS}, tests on {TEST_SESSIONS})")
    if not train or not test or set(train) & set(test):
        raise ConfigError(f"core50: training sessions {train} and test sessions {test} must both "
                          f"be non-empty and disjoint")
    return train, test


def load_core50(root: str | Path | None, download: bool, image_size: int, labels: str,
                train_sessions: Sequence[int], test_sessions: Sequence[int]) -> SourceData:
    """Find (or download) CORe50 and decode the chosen sessions at `image_size`."""
    size = check_size(image_size)
    if not isinstance(labels, str) or labels not in LABELS:
        raise ConfigError(f"core50: labels must be one of {sorted(LABELS)}, got {labels!r}")
    names, per_label = LABELS[labels]
    train_s, test_s = check_sessions(train_sessions, test_sessions)
    with open_form(require(CORE50, root, download)) as form:
        records = index_frames(form)
        check_complete(records, train_s + test_s, form.where)
        train = sorted(r for r in records if r[0] in train_s)
        test = sorted(r for r in records if r[0] in test_s)
        x = channels_first(form.decode([r[3] for r in train + test], size))
    session = torch.tensor([r[0] - 1 for r in train + test], dtype=torch.int64)
    y = torch.tensor([(r[1] - 1) // per_label for r in train + test], dtype=torch.int64)
    n = len(train)
    return SourceData("core50", x[:n], y[:n], x[n:], y[n:], names, session[:n], session[n:],
                      SESSIONS)


_UNIBO = "http://bias.csr.unibo.it/maltoni/download/core50"  # linked from vlomonaco.github.io/core50
CORE50 = Location(
    "core50",
    # md5 as recorded by Avalanche (avalanche/benchmarks/datasets/core50/core50_data.py); the
    # authors' page publishes none
    files=((ARCHIVE, "745f3373fed08d69343f1058ee559e13"),),
    mirror=_UNIBO,
    present=core50_present,
)


@SOURCES.register(
    "core50",
    aliases=("core-50", "core_50"),
    description="CORe50, 50 objects (10 categories) in 11 sessions, 128x128 colour images resized",
    location=CORE50,
)
def core50(root: str | None = None, download: bool = True, image_size: int = 32,
           labels: str = "object", train_sessions: Sequence[int] = TRAIN_SESSIONS,
           test_sessions: Sequence[int] = TEST_SESSIONS) -> SourceData:
    """CORe50 (Lomonaco & Maltoni 2017): (N, 3, image_size, image_size) in [0, 1], domains = sessions.

    `labels="object"` gives the 50 objects, `"category"` their 10 categories.
    """
    return load_core50(root, download, image_size, labels, train_sessions, test_sessions)

