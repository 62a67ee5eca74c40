"""CORe50 source: fake data sets in every published form, the session protocol, refusals."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from lifelong.core.errors import ConfigError, DataError, DatasetNotFoundError
from lifelong.data.scenarios import build_benchmark
from lifelong.data.sources import core50, load_source, source_status
from lifelong.data.sources.base import subsample
from lifelong.data.sources.core50 import CATEGORIES, OBJECTS, SESSIONS, TEST_SESSIONS, TRAIN_SESSIONS
from lifelong.data.sources.download import file_md5


def _records(data, part):
    """(session, object, frame) decoded from each sample's flat colour."""
    rgb = (getattr(data, f"{part}_x")[:, :, 0, 0] * 255).round().long()
    return [(r // 20, g // 5, b // 50) for r, g, b in rgb.tolist()]


def _expected(sessions, frames=1):
    return sorted((s, o, f) for s in sessions for o in range(1, 51) for f in range(frames))


@pytest.mark.parametrize("form", ["folder", "flat", "zip", "npz"])
def test_every_published_form_loads_the_protocol_split(isolated, make_core50, form):
    make_core50(isolated.tmp / "c", form)
    data = load_source("core50", root=str(isolated.tmp / "c"), download=False)
    assert data.name == "core50" and data.class_names == OBJECTS and data.domain_names == SESSIONS
    assert data.class_names[0] == "plug_adapter1" and data.class_names[-1] == "remote_control5"
    assert data.train_x.shape == (8 * 50, 3, 32, 32) and data.test_x.shape == (3 * 50, 3, 32, 32)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    # samples come sorted by (session, object, frame); the pixels are the image of that frame
    train, test = _records(data, "train"), _records(data, "test")
    assert train == _expected(TRAIN_SESSIONS) and test == _expected(TEST_SESSIONS)
    assert data.train_y.tolist() == [o - 1 for _, o, _ in train]
    assert data.test_y.tolist() == [o - 1 for _, o, _ in test]
    assert data.train_domain.tolist() == [s - 1 for s, _, _ in train]
    assert data.test_domain.tolist() == [s - 1 for s, _, _ in test]
    assert sorted({SESSIONS[d] for d in data.test_domain.tolist()}) == ["s10", "s3", "s7"]


def test_npz_and_png_forms_give_identical_tensors(isolated, make_core50, core50_images):
    images = core50_images(frames=2)
    make_core50(isolated.tmp / "a", "zip", images)
    make_core50(isolated.tmp / "b", "npz", images)
    a = load_source("core50", root=str(isolated.tmp / "a"), download=False, image_size=8)
    b = load_source("core50", root=str(isolated.tmp / "b"), download=False, image_size=8)
    for field in ("train_x", "train_y", "test_x", "test_y", "train_domain", "test_domain"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert _records(a, "train") == _expected(TRAIN_SESSIONS, frames=2)


def test_category_labels_group_five_objects(isolated, make_core50):
    make_core50(isolated.tmp / "c")
    data = load_source("core50", root=str(isolated.tmp / "c"), download=False, labels="category")
    assert data.class_names == CATEGORIES and data.n_classes == 10
    assert data.class_names[:3] == ("plug_adapter", "mobile_phone", "scissor")
    assert data.train_y.tolist() == [(o - 1) // 5 for _, o, _ in _records(data, "train")]
    assert torch.bincount(data.test_y).tolist() == [3 * 5] * 10


@pytest.mark.parametrize("form", ["folder", "npz"])
def test_image_size_resizes_keeping_orientation_and_range(isolated, make_core50, form, core50_images):
    """A 16x16 image black on the left and white on the right: its outer columns stay black and
    white at 4x4 (the bilinear filter blurs only near the edge), its halves exactly so at 16x16."""
    images = core50_images(sessions=(1, 3), side=16)
    half = np.zeros((16, 16, 3), np.uint8)
    half[:, 8:] = 255
    images["s1/o1/C_01_01_000.png"] = half
    make_core50(isolated.tmp / "c", form, images)
    for size in (4, 16):
        data = load_source("core50", root=str(isolated.tmp / "c"), download=False, image_size=size,
                           train_sessions=[1], test_sessions=[3])
        assert data.input_shape == (3, size, size) and data.test_x.shape == (50, 3, size, size)
        first = data.train_x[0]
        assert first[:, :, 0].max() == 0.0 and first[:, :, -1].min() == 1.0
        if size == 16:
            assert first[:, :, :8].max() == 0.0 and first[:, :, 8:].min() == 1.0
        assert data.train_x.min() >= 0.0 and data.train_x.max() <= 1.0


def test_chosen_sessions_need_only_their_folders(isolated, make_core50, core50_images):
    make_core50(isolated.tmp / "c", "zip", core50_images(sessions=(2, 5, 9)))
    data = load_source("core50", root=str(isolated.tmp / "c"), download=False,
                       train_sessions=(np.int64(9), 2), test_sessions=[5])
    assert _records(data, "train") == _expected((2, 9)) and _records(data, "test") == _expected((5,))
    assert data.train_domain.unique().tolist() == [1, 8] and data.test_domain.unique().tolist() == [4]


def test_domains_scenario_has_one_experience_per_training_session(isolated, make_core50):
    make_core50(isolated.tmp / "c", "npz")
    stream = build_benchmark("domains-core50", setting="domain", root=str(isolated.tmp / "c"),
                             download=False, source_args={"image_size": 4})
    assert len(stream) == 8 and stream.n_classes == 50 and stream.name == "domains-core50"
    assert stream.input_shape == (3, 4, 4)
    test_colours = (stream[0].test_x[:, 0, 0, 0] * 255).round().long() // 20
    assert sorted(set(test_colours.tolist())) == [3, 7, 10]
    for experience, session in zip(stream, TRAIN_SESSIONS, strict=True):
        assert ((experience.train_x[:, 0, 0, 0] * 255).round().long() // 20 == session).all()
        assert experience.train_y.tolist() == list(range(50)) and experience.classes == tuple(range(50))
        assert torch.equal(experience.test_x, stream[0].test_x)  # NI: one fixed test set
        assert torch.equal(experience.test_y, stream[0].test_y)


def test_split_core50_is_class_incremental_over_the_training_sessions(isolated, make_core50):
    make_core50(isolated.tmp / "c")
    stream = build_benchmark("split-core50", setting="class", root=str(isolated.tmp / "c"),
                             download=False, source_args={"image_size": 4})
    assert len(stream) == 10 and stream.n_classes == 50
    assert stream[1].classes == (5, 6, 7, 8, 9) and stream.class_names[5] == "mobile_phone1"
    assert [e.n_train for e in stream] == [5 * 8] * 10 and [len(e.test_y) for e in stream] == [5 * 3] * 10
    categories = build_benchmark("split-core50", root=str(isolated.tmp / "c"), download=False,
                                 source_args={"image_size": 4, "labels": "category"})
    assert len(categories) == 5 and categories.class_names[:2] == ("plug_adapter", "mobile_phone")


def test_subsample_keeps_sessions_and_labels_aligned(isolated, make_core50, core50_images):
    make_core50(isolated.tmp / "c", "zip", core50_images(frames=2))
    data = load_source("core50", root=str(isolated.tmp / "c"), download=False, image_size=4)
    small = subsample(data, n_train=60, n_test=25, seed=3)
    assert len(small.train_y) == 60 and len(small.test_domain) == 25
    assert small.domain_names == SESSIONS and small.class_names == OBJECTS
    for part in ("train", "test"):
        records = _records(small, part)
        assert getattr(small, f"{part}_domain").tolist() == [s - 1 for s, _, _ in records]
        assert getattr(small, f"{part}_y").tolist() == [o - 1 for _, o, _ in records]
    stream = build_benchmark("domains-core50", "domain", root=str(isolated.tmp / "c"), download=False,
                             limit=(60, 25), source_args={"image_size": 4})
    assert sum(e.n_train for e in stream) == 60 and len(stream[0].test_y) == 25


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"train_sessions": (1, 12)}, r"unknown session\(s\) \[12\]"),
        ({"test_sessions": (0,)}, r"unknown session\(s\) \[0\]"),
        ({"train_sessions": (1, 3), "test_sessions": (3,)}, "disjoint"),
        ({"train_sessions": ()}, "non-empty"),
        ({"labels": "colour"}, r"labels must be one of \['category', 'object'\]"),
        ({"image_size": 0}, "image_size must be a positive integer"),
        ({"image_size": 2.5}, "image_size must be a positive integer"),
        ({"train_sessions": 3}, "train_sessions must be a list of session numbers"),
        ({"test_sessions": None}, "test_sessions must be a list of session numbers"),
        ({"labels": ["object"]}, "labels must be one of"),
    ],
)
def test_bad_arguments_raise_config_error(isolated, make_core50, kwargs, fragment):
    make_core50(isolated.tmp / "c", "npz")
    with pytest.raises(ConfigError, match=fragment):
        load_source("core50", root=str(isolated.tmp / "c"), download=False, **kwargs)


@pytest.mark.parametrize("form", ["folder", "zip", "npz"])
def test_unknown_session_in_the_data_raises(isolated, make_core50, form, core50_images):
    images = core50_images()
    images["s12/o1/C_12_01_000.png"] = images["s1/o1/C_01_01_000.png"]
    make_core50(isolated.tmp / "c", form, images)
    with pytest.raises(DataError, match="names session 12, object 1; CORe50 has sessions 1-11"):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)


@pytest.mark.parametrize("form", ["folder", "npz"])
def test_session_missing_an_object_raises(isolated, make_core50, form, core50_images):
    images = {k: v for k, v in core50_images().items() if not k.startswith(("s4/o17/", "s4/o18/"))}
    make_core50(isolated.tmp / "c", form, images)
    with pytest.raises(DataError, match=r"session 4 \(s4/\) has no images of o17 \(light_bulb2\), o18"):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)


def test_missing_session_raises(isolated, make_core50, core50_images):
    make_core50(isolated.tmp / "c", "zip", core50_images(sessions=(1, 2, 3)))
    with pytest.raises(DataError, match=r"session 4 \(s4/\) has no images of o1 .* and 45 more"):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)


def test_file_named_for_another_session_raises(isolated, make_core50, core50_images):
    images = core50_images()
    images["s1/o1/C_02_01_007.png"] = images.pop("s1/o1/C_01_01_000.png")
    make_core50(isolated.tmp / "c", "folder", images)
    with pytest.raises(DataError, match="lies in s1/o1 but is named for session 2, object 1"):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)


def test_corrupt_png_raises_naming_the_file(isolated, make_core50):
    make_core50(isolated.tmp / "c", "folder")
    bad = isolated.tmp / "c" / "core50_128x128" / "s5" / "o9" / "C_05_09_000.png"
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.raises(DataError, match=r"C_05_09_000\.png: not a readable image"):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)


def test_other_files_in_the_folder_are_ignored(isolated, make_core50):
    make_core50(isolated.tmp / "c", "folder")
    (isolated.tmp / "c" / "core50_128x128" / "s1" / "o1" / "notes.txt").write_text("not an image")
    (isolated.tmp / "c" / "core50_128x128" / "s1" / ".DS_Store").write_bytes(b"\0\1")
    assert len(load_source("core50", root=str(isolated.tmp / "c"), download=False).train_y) == 400


def test_corrupt_archive_raises(isolated):
    (isolated.tmp / "c").mkdir()
    (isolated.tmp / "c" / "core50_128x128.zip").write_bytes(b"PK\3\4 not really a zip")
    with pytest.raises(DataError, match="core50_128x128.zip: unreadable zip archive"):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)


def test_archive_without_the_image_folder_raises(isolated):
    (isolated.tmp / "c").mkdir()
    with zipfile.ZipFile(isolated.tmp / "c" / "core50_128x128.zip", "w") as zf:
        zf.writestr("other/s1/o1/C_01_01_000.png", b"")
    with pytest.raises(DataError, match="holds no folder 'core50_128x128'"):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)


def _npz_case(folder, images, paths=None, x=None, npz_bytes=None):
    folder.mkdir(parents=True)
    if npz_bytes is None:
        np.savez(folder / "core50_imgs.npz", **({"x": np.stack(list(images.values()))} if x is None else x))
    else:
        (folder / "core50_imgs.npz").write_bytes(npz_bytes)
    (folder / "paths.pkl").write_bytes(pickle.dumps(list(images) if paths is None else paths))


def _truncated_npz(images) -> bytes:
    """An npz whose array lacks the bytes of its last image."""
    x = np.stack(list(images.values()))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": x.shape})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + x.tobytes()[: -x[0].size])
    return out.getvalue()


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ({"paths": ["s1/o1/C_01_01_000.png"]}, r"holds 550 images but .*paths.pkl names 1"),
        ({"paths": {"not": "a list"}}, "expected a pickled list of image paths, got dict"),
        ({"paths": "bad"}, r"entry 0 \('s1/o1/frame\.jpg'\) is not a CORe50 image path"),
        ({"x": {"images": np.zeros((550, 8, 8, 3), np.uint8)}}, r"holds no array 'x' \(it has \['images.npy'\]\)"),
        ({"x": {"x": np.zeros((550, 8, 8, 3), np.float32)}}, r"expected uint8 images \(N, H, W, 3\), got float32"),
        ({"x": {"x": np.zeros((550, 8, 8), np.uint8)}}, r"expected uint8 images \(N, H, W, 3\)"),
        ({"npz_bytes": b"garbage"}, "not a readable npz archive"),
        ({"npz_bytes": "truncated"}, "truncated — rows from 512 on are missing"),
    ],
)
def test_corrupt_or_mismatched_npz_and_pickle_raise(isolated, case, fragment, core50_images):
    images = core50_images()
    if case.get("npz_bytes") == "truncated":
        case = {"npz_bytes": _truncated_npz(images)}
    if case.get("paths") == "bad":
        case = {"paths": ["s1/o1/frame.jpg"] + list(images)[1:]}
    _npz_case(isolated.tmp / "c", images, **case)
    with pytest.raises(DataError, match=fragment):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)


def test_malicious_paths_pickle_is_refused_and_never_runs(isolated, make_core50):
    marker = isolated.tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    make_core50(isolated.tmp / "c", "npz")
    (isolated.tmp / "c" / "paths.pkl").write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(DataError, match=r"paths.pkl: refusing to unpickle (posix|os)\.system"):
        load_source("core50", root=str(isolated.tmp / "c"), download=False)
    assert not marker.exists()


def test_nothing_present_without_download_raises_with_every_way_to_get_it(isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        load_source("core50", download=False)
    message = str(info.value)
    assert "data set 'core50' not found" in message and "download=False" in message
    assert "core50_128x128.zip from http://bias.csr.unibo.it/maltoni/download/core50/" in message
    assert str(isolated.cache / "core50") in message and "LIFELONG_MIRROR_CORE50" in message


def test_unreachable_mirror_raises_not_found(isolated, monkeypatch):
    monkeypatch.setenv("LIFELONG_MIRROR_CORE50", "http://127.0.0.1:9")
    with pytest.raises(DatasetNotFoundError, match="downloading from http://127.0.0.1:9/ failed"):
        load_source("core50", download=True)


def test_archive_downloads_verified_into_the_cache(isolated, make_core50, serve, monkeypatch, core50_images):
    mirror = isolated.tmp / "mirror"
    make_core50(mirror, "zip", core50_images(sessions=(1, 3)))
    url, requested = serve(mirror)
    monkeypatch.setenv("LIFELONG_MIRROR_CORE50", url)
    published = ((core50.ARCHIVE, file_md5(mirror / core50.ARCHIVE)),)
    monkeypatch.setattr(core50, "CORE50", dataclasses.replace(core50.CORE50, files=published))
    data = load_source("core50", download=True, train_sessions=(1,), test_sessions=(3,))
    assert _records(data, "train") == _expected((1,)) and requested == ["/core50_128x128.zip"]
    assert (isolated.cache / "core50" / core50.ARCHIVE).read_bytes() == (mirror / core50.ARCHIVE).read_bytes()
    assert source_status("core50")["path"] == str(isolated.cache / "core50")


def test_status_lists_the_archive_and_finds_the_npz_form(isolated, make_core50, core50_images):
    status = source_status("CORe50")
    assert status["name"] == "core50" and not status["present"]
    assert status["urls"] == ["http://bias.csr.unibo.it/maltoni/download/core50/core50_128x128.zip"]
    make_core50(isolated.system / "core50", "npz", core50_images(sessions=(1,)))
    assert source_status("core-50")["path"] == str(isolated.system / "core50")



def _flag_members(data: bytes, flag: int | None = None, method: int | None = None) -> bytes:
    """A zip whose members claim encryption (`flag` 1) or a compression zipfile lacks (`method` 9)."""
    out = bytearray(data)
    for signature, at_flag, at_method in ((b"PK\x01\x02", 8, 10), (b"PK\x03\x04", 6, 8)):
        i = out.find(signature)
        while i != -1:
            if flag is not None:
                out[i + at_flag:i + at_flag + 2] = flag.to_bytes(2, "little")
            if method is not None:
                out[i + at_method:i + at_method + 2] = method.to_bytes(2, "little")
            i = out.find(signature, i + 4)
    return bytes(out)


@pytest.mark.parametrize("kind", [{"flag": 1}, {"method": 9}], ids=["encrypted", "deflate64"])
def test_zip_members_zipfile_cannot_read_raise_data_errors(tmp_path, kind):
    from lifelong.data.sources.npz import open_npz_array
    from lifelong.data.sources.trees import open_tree

    for name, member, content in (("a.zip", "core50_128x128/s1/o1/C_01_01_000.png", b"abc"),
                                  ("a.npz", "x.npy", b"\x93NUMPY" + bytes(50))):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr(member, content)
        (tmp_path / name).write_bytes(_flag_members(buffer.getvalue(), **kind))
    with pytest.raises(DataError, match="unreadable member"), \
            open_tree(None, tmp_path / "a.zip", ("core50_128x128",)) as tree:
        tree.read(tree.names()[0])
    with pytest.raises(DataError, match="unreadable member"), open_npz_array(tmp_path / "a.npz", "x"):
        pass
