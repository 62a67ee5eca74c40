"""Image decoding for CORe50/CLEAR: a centre crop to a square, then a resize, never a stretch."""

import io

import numpy as np
import pytest
from PIL import Image

from lifelong.core.errors import DataError
from lifelong.data.sources.images import decode_image


def png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def test_wide_images_lose_their_side_bands_and_keep_their_centre():
    """A 12x20 image: 4-px red bands left and right of a green 12x12 centre; cropping keeps only
    the green, up to the resampling filter's reach past the crop (a plain resize keeps the red)."""
    rgb = np.zeros((12, 20, 3), np.uint8)
    rgb[:, :4, 0] = rgb[:, 16:, 0] = 255
    rgb[:, 4:16, 1] = 255
    out = decode_image(png(rgb), 6, "test")
    assert out.shape == (6, 6, 3) and out.dtype == np.uint8
    assert out[..., 0].max() < 64 and out[:, 1:5, 0].max() == 0 and out[..., 1].min() > 200
    stretched = np.asarray(Image.fromarray(rgb).resize((6, 6), Image.Resampling.BILINEAR))
    assert stretched[..., 0].max() > 200  # what a stretch would give
    tall = decode_image(png(rgb.transpose(1, 0, 2).copy()), 6, "test")  # the same, standing up
    assert tall[..., 0].max() < 64 and tall[1:5, :, 0].max() == 0
    half = np.zeros((8, 8, 3), np.uint8)
    half[:, 4:] = 255  # left black, right white: the orientation survives
    small = decode_image(png(half), 4, "test")
    assert small[:, 0].max() == 0 and small[:, -1].min() == 255


def test_unreadable_bytes_raise_data_errors_naming_the_file():
    with pytest.raises(DataError, match="s1/o1/x.png: not a readable image"):
        decode_image(b"not an image", 4, "s1/o1/x.png")
