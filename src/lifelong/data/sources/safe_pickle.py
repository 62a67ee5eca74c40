"""Unpickle data files without running arbitrary code: only numpy arrays and plain containers.

A pickle names the callables it rebuilds objects with; `find_class` resolves those names. Here
it resolves only numpy's array/dtype/scalar reconstructors (under both the numpy 1 `numpy.core`
and numpy 2 `numpy._core` module paths) and `_codecs.encode`, which protocol-2 pickles written by
Python 3 use to rebuild `bytes`. Dicts, lists, tuples, strings and numbers need no name at all.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

from lifelong.core.errors import DataError

# numpy's own reconstructors, taken from what numpy pickles with: no numpy module path is imported
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
_SCALAR = np.float64(0).__reduce__()[0]

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _SCALAR for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _FROMBUFFER for core in ("core", "_core")},
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler whose name lookups succeed only for `ALLOWED_GLOBALS`."""

    def __init__(self, data: bytes, where: str) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")  # latin1: Python 2 numpy pickles
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.where}: refusing to unpickle {module}.{name}: data files may only hold "
                f"numpy arrays and plain containers. The file is corrupt or malicious; delete it "
                f"and fetch it again from the official source"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.where}: refusing a pickle persistent id ({pid!r}) in a data file")


def load_pickle(data: bytes, where: str = "<bytes>") -> Any:
    """Unpickle `data` allowing only numpy arrays and plain containers; anything else: DataError."""
    try:
        return _NumpyOnlyUnpickler(data, where).load()
    except DataError:
        raise
    except Exception as err:  # a malformed pickle can fail in many ways; all mean "unreadable"
        raise DataError(
            f"{where}: not a readable pickle ({type(err).__name__}: {err}); delete it and fetch it "
            f"again"
        ) from err
