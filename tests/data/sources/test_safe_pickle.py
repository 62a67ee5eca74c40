"""The restricted unpickler: numpy arrays and containers load, everything else is refused."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from lifelong.core.errors import DataError
from lifelong.data.sources.safe_pickle import load_pickle


class _Evil:
    """Unpickling this would run `os.system` and create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_and_containers_round_trip(protocol):
    obj = {
        "data": np.arange(12, dtype=np.uint8).reshape(3, 4),
        "floats": np.linspace(0, 1, 5),
        "labels": [3, 1, 2],
        "pair": (b"raw", "text"),
        "scalar": np.int64(7),
        "nested": {"x": [1.5, None, True]},
    }
    out = load_pickle(pickle.dumps(obj, protocol=protocol))
    assert out.keys() == obj.keys()
    for key in ("data", "floats"):
        assert out[key].dtype == obj[key].dtype
        np.testing.assert_array_equal(out[key], obj[key])
    assert out["labels"] == [3, 1, 2] and out["pair"] == (b"raw", "text")
    assert out["scalar"] == 7 and out["nested"] == {"x": [1.5, None, True]}


def test_python2_numpy_core_pickle_loads(py2_pickle):
    data = np.array([[0, 1, 2], [250, 254, 255]], dtype=np.uint8)
    out = load_pickle(py2_pickle(data, [4, 9], "labels"))
    assert out["labels"] == [4, 9] and out["data"].dtype == np.uint8
    np.testing.assert_array_equal(out["data"], data)


def test_numpy2_module_path_loads():
    raw = pickle.dumps(np.arange(3, dtype=np.uint8), protocol=2)
    for module in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        patched = raw.replace(b"numpy._core.multiarray", module).replace(
            b"numpy.core.multiarray", module
        )
        np.testing.assert_array_equal(load_pickle(patched), [0, 1, 2])


@pytest.mark.parametrize(
    "wrap", [lambda e: e, lambda e: {"data": [e]}, lambda e: np.array([e], dtype=object)]
)
def test_code_execution_is_refused_and_never_runs(tmp_path, wrap):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(wrap(_Evil(marker)))
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os)\.system") as info:
        load_pickle(payload, where="batch_1")
    assert "batch_1" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("target", "args"), [(eval, ("1",)), (getattr, (1, "real")), (__import__, ("os",))]
)
def test_builtins_are_refused(target, args):
    class Call:
        def __reduce__(self):
            return (target, args)

    with pytest.raises(DataError, match=f"refusing to unpickle builtins.{target.__name__}"):
        load_pickle(pickle.dumps(Call()))


def test_persistent_ids_are_refused():
    class Persisting(pickle.Pickler):
        def persistent_id(self, obj):
            return "external" if obj == "secret" else None

    buf = io.BytesIO()
    Persisting(buf).dump(["secret"])
    with pytest.raises(DataError, match="persistent id"):
        load_pickle(buf.getvalue())


@pytest.mark.parametrize("raw", [b"", b"not a pickle", pickle.dumps([1, 2])[:-3]])
def test_garbage_is_a_data_error(raw):
    with pytest.raises(DataError, match="not a readable pickle"):
        load_pickle(raw, where="x.pkl")
