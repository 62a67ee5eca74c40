"""One array of an `.npz` archive read block by block: never all in memory, never unpickled."""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from lifelong.core.errors import DataError

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
# encrypted members raise RuntimeError, compression zipfile lacks (Deflate64) NotImplementedError
_READ_ERRORS = (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError, NotImplementedError)


class NpyStream:
    """The header (shape, dtype) of a C-ordered `.npy` member and its rows, read in blocks."""

    def __init__(self, fh: IO[bytes], shape: tuple[int, ...], dtype: np.dtype, where: str) -> None:
        self.fh, self.shape, self.dtype, self.where = fh, shape, dtype, where

    def blocks(self, rows: int = 256) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most `rows` rows, each an array (n, *shape[1:])."""
        row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        for start in range(0, self.shape[0], rows):
            n = min(rows, self.shape[0] - start)
            try:
                raw = self.fh.read(n * row_bytes)
            except _READ_ERRORS as err:
                raise DataError(f"{self.where}: unreadable at row {start} ({err}); fetch it again") from err
            if len(raw) != n * row_bytes:
                raise DataError(
                    f"{self.where}: truncated — rows from {start} on are missing for shape "
                    f"{self.shape}; delete the file and fetch it again"
                )
            yield np.frombuffer(raw, dtype=self.dtype).reshape(n, *self.shape[1:])


@contextmanager
def open_npz_array(path: Path, key: str) -> Iterator[NpyStream]:
    """The array `key` of the npz at `path` as an `NpyStream`; anything unreadable: DataError."""
    member = f"{key}.npy"
    where = f"{path}:{member}"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{path}: not a readable npz archive ({err}); fetch it again") from err
    with archive:
        if member not in archive.namelist():
            raise DataError(
                f"{path}: holds no array {key!r} (it has {sorted(archive.namelist())}); it is not "
                f"the published file — fetch it again"
            )
        try:
            fh = archive.open(member)
        except _READ_ERRORS as err:
            raise DataError(f"{where}: unreadable member ({err}); fetch the file again") from err
        with fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version not in _HEADER_READERS:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, fortran_order, dtype = _HEADER_READERS[version](fh)
            except _READ_ERRORS as err:
                raise DataError(f"{where}: not a readable .npy array ({err})") from err
            if fortran_order or dtype.hasobject:
                raise DataError(f"{where}: expected a C-ordered numeric array, got {dtype} "
                                f"(fortran order: {fortran_order})")
            yield NpyStream(fh, tuple(shape), dtype, where)
