"""scikit-learn's bundled 8×8 digits: the embedded default data set, needing no files or network."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from lifelong.core.checks import check_numbers
from lifelong.core.errors import ConfigError
from lifelong.core.registries import SOURCES
from lifelong.data.sources.base import SourceData


@SOURCES.register("digits", description="scikit-learn 8x8 digits (1797 images, embedded)")
def digits(root: str | None = None, download: bool = True, test_fraction: float = 0.3) -> SourceData:
    """Digits with a fixed stratified split (random_state=0); pixels scaled to [0, 1]."""
    del root, download  # bundled with scikit-learn
    (fraction,) = check_numbers("digits", test_fraction=test_fraction)
    if not 0 < fraction < 1:
        raise ConfigError(f"digits: test_fraction is the share of images held out, in (0, 1); got {test_fraction}")
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    idx = torch.arange(len(y)).numpy()
    try:
        tr, te = train_test_split(idx, test_size=fraction, stratify=bunch.target, random_state=0)
    except ValueError as err:  # too few images on one side to hold every class
        raise ConfigError(f"digits: test_fraction={test_fraction} cannot split the 10 classes ({err})") from None
    tr, te = torch.as_tensor(sorted(tr)), torch.as_tensor(sorted(te))
    names = tuple(str(d) for d in range(10))
    return SourceData("digits", x[tr], y[tr], x[te], y[te], names)

