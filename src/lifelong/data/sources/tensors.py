"""Decoded numpy arrays → `SourceData` tensors: pixels scaled to [0, 1], checked int64 labels."""

from __future__ import annotations

import numpy as np
import torch

from lifelong.core.errors import LabelOutOfRangeError


def unit_pixels(array: np.ndarray) -> torch.Tensor:
    """uint8 pixels → a float32 tensor of the same shape, scaled to [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8)).float().div_(255.0)


def class_labels(array: np.ndarray, n_classes: int, where: str) -> torch.Tensor:
    """Integer labels → an int64 tensor, after checking every label lies in [0, n_classes)."""
    if array.size and not 0 <= int(array.min()) <= int(array.max()) < n_classes:
        raise LabelOutOfRangeError(
            f"{where}: labels span [{array.min()}, {array.max()}], outside [0, {n_classes}); "
            f"the file does not belong to this data set or is corrupt"
        )
    return torch.from_numpy(np.asarray(array, dtype=np.int64))
