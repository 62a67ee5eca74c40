"""The IDX reader/writer against hand-written bytes, round trips and corrupt files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lifelong.core.errors import DataError
from lifelong.data.sources.idx import IDX_DTYPES, decode_idx, encode_idx, read_idx, write_idx


def test_decodes_hand_written_ubyte_vector():
    raw = b"\x00\x00\x08\x01" + b"\x00\x00\x00\x03" + b"\x01\x02\xff"
    out = decode_idx(raw)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [1, 2, 255])


def test_decodes_big_endian_int32_matrix_to_native():
    raw = b"\x00\x00\x0c\x02" + struct.pack(">II", 1, 2) + struct.pack(">ii", 1, -2)
    out = decode_idx(raw)
    assert out.dtype == np.dtype("=i4") and out.shape == (1, 2)
    np.testing.assert_array_equal(out, [[1, -2]])


def test_gzip_is_told_by_magic_not_name():
    raw = b"\x00\x00\x08\x02" + struct.pack(">II", 2, 2) + bytes([0, 10, 20, 30])
    np.testing.assert_array_equal(decode_idx(gzip.compress(raw)), [[0, 10], [20, 30]])


@settings(max_examples=40, deadline=None)
@given(
    array=st.sampled_from(sorted(IDX_DTYPES.values())).flatmap(
        lambda dt: arrays(
            np.dtype(dt).newbyteorder("="),
            st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple),
        )
    ),
    compress=st.booleans(),
)
def test_encode_decode_round_trip(array, compress):
    out = decode_idx(encode_idx(array, compress=compress))
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_write_then_read_file(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "not an IDX file"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "not an IDX file"),  # bad leading bytes
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "not an IDX file"),  # unknown type code
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "header truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "truncated or corrupt"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "truncated or corrupt"),  # trailing bytes
        (b"\x1f\x8bnot really gzip", "corrupt gzip"),
    ],
)
def test_corrupt_input_raises_data_error_naming_the_file(raw, fragment):
    with pytest.raises(DataError, match=fragment) as info:
        decode_idx(raw, where="some/file")
    assert "some/file" in str(info.value)


def test_unsupported_dtype_cannot_be_written():
    with pytest.raises(DataError, match="IDX cannot hold dtype int64"):
        encode_idx(np.zeros(3, dtype=np.int64))
