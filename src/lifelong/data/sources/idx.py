"""The IDX format of (Fashion-)MNIST (LeCun et al., 1998): reader and writer, gzip or raw."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from lifelong.core.errors import DataError
from lifelong.core.records import atomic_write_bytes

# type code of the third magic byte → big-endian numpy dtype
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"


def idx_content(raw: bytes, where: str = "<bytes>") -> bytes:
    """The IDX bytes of a file's contents: decompressed when gzipped (the gzip magic tells)."""
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{where}: corrupt gzip stream ({err}); delete the file and fetch it again"
        ) from err


def decode_idx(raw: bytes, where: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (gzipped or not: the gzip magic tells) into a native-endian array."""
    raw = idx_content(raw, where)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise DataError(
            f"{where}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}; expected 0000, "
            f"a type code in {sorted(hex(c) for c in IDX_DTYPES)} and the number of dimensions)"
        )
    ndim, dtype = raw[3], np.dtype(IDX_DTYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{where}: IDX header truncated ({len(raw)} bytes for {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{where}: IDX body has {len(raw) - header} bytes but shape {shape} of {dtype.name} "
            f"needs {expected}; the file is truncated or corrupt — delete it and fetch it again"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def encode_idx(array: np.ndarray, compress: bool = True) -> bytes:
    """Encode an array as IDX bytes (big-endian), gzip-compressed when `compress`."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(
            f"IDX cannot hold dtype {array.dtype}; use one of {sorted(map(str, codes))}"
        )
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    raw = header + array.astype(IDX_DTYPES[code]).tobytes()
    return gzip.compress(raw, mtime=0) if compress else raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (`.gz` or raw) into a native-endian numpy array."""
    path = Path(path)
    return decode_idx(path.read_bytes(), str(path))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Atomically write `array` as IDX, gzip-compressed when the name ends in `.gz`."""
    return atomic_write_bytes(path, encode_idx(array, compress=str(path).endswith(".gz")))
