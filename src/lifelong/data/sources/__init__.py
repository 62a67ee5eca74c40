"""Named data sets → `SourceData`; `load_source` resolves a name through the registry."""

from __future__ import annotations

from lifelong.core.registries import SOURCES
from lifelong.data.sources import cifar as _cifar  # noqa: F401  (registers)
from lifelong.data.sources import clear as _clear  # noqa: F401  (registers)
from lifelong.data.sources import core50 as _core50  # noqa: F401  (registers)
from lifelong.data.sources import digits as _digits  # noqa: F401  (registers)
from lifelong.data.sources import mnist as _mnist  # noqa: F401  (registers)
from lifelong.data.sources.base import SourceData
from lifelong.data.sources.status import source_status


def load_source(name: str, root: str | None = None, download: bool = True, **kwargs) -> SourceData:
    """Load the data set registered as `name` (train/test tensors and class names)."""
    return SOURCES.build(name, root=root, download=download, **kwargs)


__all__ = ["SourceData", "load_source", "source_status"]
