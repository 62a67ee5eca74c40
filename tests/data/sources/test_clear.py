"""CLEAR-10/100 sources: fake training and test sets in the published layout, buckets, refusals."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from lifelong.core.errors import DataError, DatasetNotFoundError
from lifelong.data.scenarios import build_benchmark
from lifelong.data.sources import clear, load_source, source_status
from lifelong.data.sources.base import subsample
from lifelong.data.sources.download import file_md5

CLASSES = ("BACKGROUND", "baseball", "bus")


def _colours(x):
    """Each sample's (R, G, B) in 0-255 at its centre."""
    h, w = x.shape[2] // 2, x.shape[3] // 2
    return (x[:, :, h, w] * 255).round().long()


def _decoded(data, part):
    """(bucket, label, is test) decoded from each sample's flat colour (JPEG: within ±3)."""
    rgb = _colours(getattr(data, f"{part}_x"))
    return [(round(r / 40), round(g / 60), round((b - 100) / 100)) for r, g, b in rgb.tolist()]


@pytest.mark.parametrize("archive", [False, True])
def test_training_and_test_sets_load_with_buckets_as_domains(isolated, make_clear, archive):
    make_clear(isolated.tmp / "c", archive=archive)
    data = load_source("clear10", root=str(isolated.tmp / "c"), download=False)
    assert data.name == "clear10" and data.class_names == CLASSES
    assert data.domain_names == ("bucket 1", "bucket 2", "bucket 3")
    assert data.train_x.shape == (3 * 3 * 2, 3, 32, 32) and data.test_x.shape == (3 * 3, 3, 32, 32)
    assert data.train_x.dtype == torch.float32 and data.test_domain.dtype == torch.int64
    assert data.train_x.min() >= 0.0 and data.train_x.max() <= 1.0
    train = [(b, c, 0) for b in (1, 2, 3) for c in range(3) for _ in range(2)]
    test = [(b, c, 1) for b in (1, 2, 3) for c in range(3)]
    assert _decoded(data, "train") == train and _decoded(data, "test") == test
    assert data.train_y.tolist() == [c for _, c, _ in train]
    assert data.train_domain.tolist() == [b - 1 for b, _, _ in train]
    assert data.test_y.tolist() == [c for _, c, _ in test]
    assert data.test_domain.tolist() == [b - 1 for b, _, _ in test]
    expected = torch.tensor([[40 * b, 60 * c, 100 + 100 * t] for b, c, t in train])
    assert (_colours(data.train_x) - expected).abs().max() <= 3


def test_train_folder_of_the_metadata_archive_is_accepted(isolated, make_clear):
    make_clear(isolated.tmp / "c", train_dir="train")
    assert load_source("clear-10", root=str(isolated.tmp / "c"), download=False).train_y.shape == (18,)


def test_zipped_and_extracted_sets_may_be_mixed(isolated, make_clear):
    make_clear(isolated.tmp / "z", archive=True)
    make_clear(isolated.tmp / "c")
    shutil.rmtree(isolated.tmp / "c" / "test")
    (isolated.tmp / "z" / "clear10-test.zip").rename(isolated.tmp / "c" / "clear10-test.zip")
    data = load_source("clear10", root=str(isolated.tmp / "c"), download=False)
    assert data.test_x.shape[0] == 9 and _decoded(data, "test")[0] == (1, 0, 1)


def test_hidden_and_other_files_are_ignored(isolated, make_clear, clear_files):
    train = clear_files(test=False)
    train["labeled_images/1/bus/._1020.jpg"] = b"\x00\x05\x16\x07 a macOS resource fork"
    train["labeled_images/1/bus/notes.txt"] = b"not an image"
    make_clear(isolated.tmp / "c", train=train)
    assert load_source("clear10", root=str(isolated.tmp / "c"), download=False).train_y.shape == (18,)


def test_image_size_crops_to_a_square_and_resizes(isolated, make_clear):
    """The fake images are 12x16: centre-cropped to 12x12, then resized."""
    make_clear(isolated.tmp / "c")
    for size in (5, 12):
        data = load_source("clear10", root=str(isolated.tmp / "c"), download=False, image_size=size)
        assert data.input_shape == (3, size, size) and data.test_x.shape[1:] == (3, size, size)


def test_clear100_reads_the_same_layout(isolated, make_clear):
    make_clear(isolated.tmp / "c", archive=True, variant="clear100")
    data = load_source("clear100", root=str(isolated.tmp / "c"), download=False, image_size=4)
    assert data.name == "clear100" and data.class_names == CLASSES and len(data.domain_names) == 3


def test_domains_scenario_trains_and_tests_on_each_bucket(isolated, make_clear):
    make_clear(isolated.tmp / "c")
    stream = build_benchmark("domains-clear10", setting="domain", root=str(isolated.tmp / "c"),
                             download=False, source_args={"image_size": 8})
    assert len(stream) == 3 and stream.n_classes == 3 and stream.class_names == CLASSES
    for i, experience in enumerate(stream):
        assert experience.n_train == 6 and len(experience.test_y) == 3 and experience.task == i
        assert {round(r / 40) for r in _colours(experience.train_x)[:, 0].tolist()} == {i + 1}
        assert {round(r / 40) for r in _colours(experience.test_x)[:, 0].tolist()} == {i + 1}
        assert experience.train_y.tolist() == [0, 0, 1, 1, 2, 2] and experience.test_y.tolist() == [0, 1, 2]


def test_class_setting_shifts_labels_per_bucket(isolated, make_clear):
    make_clear(isolated.tmp / "c")
    stream = build_benchmark("domains-clear10", setting="class", root=str(isolated.tmp / "c"),
                             download=False, source_args={"image_size": 4})
    assert stream.n_classes == 9 and stream[2].classes == (6, 7, 8)
    assert stream[2].test_y.tolist() == [6, 7, 8] and stream.class_names[3] == "BACKGROUND@bucket 2"


def test_subsample_keeps_buckets_aligned(isolated, make_clear):
    make_clear(isolated.tmp / "c")
    data = subsample(load_source("clear10", root=str(isolated.tmp / "c"), download=False, image_size=6),
                     n_train=7, n_test=5, seed=1)
    for part in ("train", "test"):
        decoded = _decoded(data, part)
        assert getattr(data, f"{part}_domain").tolist() == [b - 1 for b, _, _ in decoded]
        assert getattr(data, f"{part}_y").tolist() == [c for _, c, _ in decoded]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda tr, te: tr.pop("class_names.txt"), r"train_image_only.*: no class_names.txt"),
        (lambda tr, te: te.update({"class_names.txt": b"BACKGROUND\nbus\nbaseball\n"}),
         r"class_names.txt differs from .*train_image_only"),
        (lambda tr, te: tr.update({"class_names.txt": b"bus\nbus\n"}), "expected distinct class names"),
        (lambda tr, te: tr.update({"class_names.txt": b"\xff\xfe\x00"}), "not UTF-8 text"),
        (lambda tr, te: tr.update({"labeled_images/2/hockey/5.jpg": tr["labeled_images/2/bus/2020.jpg"]}),
         r"labeled_images/2/hockey/5.jpg: class 'hockey' is not in class_names.txt"),
        (lambda tr, te: tr.update({"labeled_images/x/bus/5.jpg": tr["labeled_images/2/bus/2020.jpg"]}),
         "bucket folder 'x' is not a number"),
        (lambda tr, te: [tr.pop(k) for k in list(tr) if k.startswith("labeled_images/2/baseball/")],
         r"train_image_only.*: labeled_images/2/baseball/ has no images \(1 bucket/class folders missing\)"),
        (lambda tr, te: [te.pop(k) for k in list(te) if k.startswith("labeled_images/3/bus/")],
         r"test/?: labeled_images/3/bus/ has no images"),
        (lambda tr, te: [te.pop(k) for k in list(te) if k.startswith("labeled_images/3/")],
         r"test buckets \[1, 2\] differ from the training buckets \[1, 2, 3\]"),
        (lambda tr, te: [te.pop(k) for k in list(te) if k.startswith("labeled_images/")]
         + [te.update({"labeled_images/1/bus/notes.txt": b"not an image"})],
         r"test/?: no images labeled_images/<bucket>/<class>/\*.jpg"),
        (lambda tr, te: tr.update({"labeled_images/1/bus/1021.jpg": b"\xff\xd8\xff not a jpeg"}),
         r"labeled_images/1/bus/1021.jpg: not a readable image"),
    ],
)
@pytest.mark.parametrize("archive", [False, True])
def test_inconsistent_sets_raise_data_error(isolated, make_clear, clear_files, edit, fragment, archive):
    train, test = clear_files(test=False), clear_files(test=True, per_class=1)
    edit(train, test)
    make_clear(isolated.tmp / "c", archive=archive, train=train, test=test)
    with pytest.raises(DataError, match=fragment):
        load_source("clear10", root=str(isolated.tmp / "c"), download=False)


def test_archive_without_the_expected_folder_raises(isolated, make_clear):
    make_clear(isolated.tmp / "c", archive=True, train_dir="images")
    with pytest.raises(DataError, match="holds no folder 'train_image_only' or 'train'"):
        load_source("clear10", root=str(isolated.tmp / "c"), download=False)


def test_one_set_alone_is_not_the_data_set(isolated, make_clear):
    make_clear(isolated.tmp / "c")
    (isolated.tmp / "c" / "test").rename(isolated.tmp / "elsewhere")
    with pytest.raises(DatasetNotFoundError, match="clear10-train-image-only.zip, clear10-test.zip"):
        load_source("clear10", root=str(isolated.tmp / "c"), download=False)


def test_nothing_present_without_download_raises_with_every_way_to_get_it(isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        load_source("clear100", download=False)
    message = str(info.value)
    assert "data set 'clear100' not found" in message and "LIFELONG_MIRROR_CLEAR100" in message
    assert "from https://clear-challenge.s3.us-east-2.amazonaws.com/" in message


def test_both_archives_download_verified(isolated, make_clear, serve, monkeypatch):
    mirror = isolated.tmp / "mirror"
    make_clear(mirror, archive=True)
    url, requested = serve(mirror)
    monkeypatch.setenv("LIFELONG_MIRROR_CLEAR10", url)
    files = tuple((name, file_md5(mirror / name)) for name, _ in clear.CLEAR10.files)
    monkeypatch.setattr(clear, "CLEAR10", dataclasses.replace(clear.CLEAR10, files=files))
    data = load_source("clear10", root=str(isolated.tmp / "data"), download=True, image_size=4)
    assert data.train_y.shape == (18,) and sorted(requested) == ["/clear10-test.zip",
                                                                   "/clear10-train-image-only.zip"]
    assert source_status("clear10", root=isolated.tmp / "data")["present"]


def test_status_urls(isolated):
    assert source_status("clear_10")["urls"] == [
        "https://clear-challenge.s3.us-east-2.amazonaws.com/clear10-train-image-only.zip",
        "https://clear-challenge.s3.us-east-2.amazonaws.com/clear10-test.zip",
    ]


def test_the_other_variants_files_are_refused(isolated, make_clear, clear_files):
    """CLEAR-10 and CLEAR-100 extract to the same folder names: the class count tells them apart."""
    classes = tuple(f"c{k}" for k in range(100))
    make_clear(isolated.tmp / "c", train=clear_files(False, buckets=(1,), per_class=1, classes=classes, side=4),
               test=clear_files(True, buckets=(1,), per_class=1, classes=classes, side=4))
    with pytest.raises(DataError, match="lists 100 classes, as clear100 does, not the 11 of clear10"):
        load_source("clear10", root=str(isolated.tmp / "c"), download=False)
    assert load_source("clear100", root=str(isolated.tmp / "c"), download=False).n_classes == 100
