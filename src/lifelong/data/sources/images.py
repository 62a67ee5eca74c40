"""Encoded image files → square uint8 RGB arrays of one size, decoded and resized with Pillow."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps
from rich.progress import track

from lifelong.core.errors import ConfigError, DataError
from lifelong.data.sources.tensors import unit_pixels
from lifelong.data.sources.trees import Tree

T = TypeVar("T")


def check_size(image_size: int) -> int:
    """`image_size` must be a positive int (the side of the square images returned)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"image_size must be a positive integer (e.g. 32), got {image_size!r}")
    return image_size


def fit(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop `image` to a square and resize it (bilinear) to a (size, size, 3) uint8 array."""
    return np.asarray(ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR))


def decode_image(data: bytes, size: int, where: str) -> np.ndarray:
    """PNG/JPEG bytes → a (size, size, 3) uint8 RGB array; an unreadable image raises DataError."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at the smallest scale still >= size
            return fit(image, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(
            f"{where}: not a readable image ({type(err).__name__}: {err}); the file is truncated or "
            f"corrupt — delete the data set's files and fetch them again"
        ) from err


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over `items` with a transient progress bar on a terminal (none otherwise)."""
    yield from track(items, description=description, total=total, transient=True,
                     disable=not sys.stderr.isatty())


def decode_files(tree: Tree, names: Sequence[str], size: int, description: str) -> np.ndarray:
    """Decode the files `names` of `tree` into one (N, size, size, 3) uint8 array, in order."""
    out = np.empty((len(names), size, size, 3), dtype=np.uint8)
    for i, name in enumerate(progress(names, description)):
        out[i] = decode_image(tree.read(name), size, tree.describe(name))
    return out


def channels_first(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 → float32 (N, 3, H, W) in [0, 1]."""
    return unit_pixels(images.transpose(0, 3, 1, 2))
