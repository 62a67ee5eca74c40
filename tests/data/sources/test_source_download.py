"""Downloads from a local HTTP server: verified, atomic, cached; failures end fast and clearly."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import threading

import pytest

from lifelong.core.errors import ChecksumError, DatasetNotFoundError
from lifelong.data.sources import cifar, download, load_source, mnist
from lifelong.data.sources.download import download_file, file_md5


def _published(monkeypatch, module, attr, folder):
    """Set the Location's md5s to those of the generated files in `folder` (our mirror)."""
    location = getattr(module, attr)
    files = tuple((name, file_md5(folder / name)) for name, _ in location.files)
    monkeypatch.setattr(module, attr, dataclasses.replace(location, files=files))


def _no_partial_files(folder):
    return not any(p.name.endswith(".part") for p in folder.rglob("*"))


def test_mnist_downloads_into_the_cache_verified_and_once(isolated, make_mnist, trust_idx, serve, monkeypatch):
    mirror = isolated.tmp / "mirror"
    arrays = make_mnist(mirror, n_train=9, n_test=4)
    url, requested = serve(mirror)
    monkeypatch.setenv("LIFELONG_MIRROR_MNIST", url + "/")
    _published(monkeypatch, mnist, "MNIST", mirror)
    trust_idx(mirror, "mnist")

    data = load_source("mnist", download=True)
    assert data.train_x.shape == (9, 1, 28, 28)
    assert data.train_y.tolist() == arrays["train_y"].tolist()
    target = isolated.cache / "mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(mnist.IDX_FILES)
    for name in mnist.IDX_FILES:
        assert (target / name).read_bytes() == (mirror / name).read_bytes()
    assert sorted(requested) == sorted(f"/{name}" for name in mnist.IDX_FILES)

    load_source("mnist", download=True)  # found in the cache: no new request
    assert len(requested) == 4


def test_download_goes_under_root_and_fetches_only_missing_files(
    isolated, make_mnist, trust_idx, serve, monkeypatch
):
    mirror = isolated.tmp / "mirror"
    make_mnist(mirror)
    url, requested = serve(mirror)
    monkeypatch.setenv("LIFELONG_MIRROR_FASHION_MNIST", url)
    _published(monkeypatch, mnist, "FASHION", mirror)
    trust_idx(mirror, "fashion-mnist")
    target = isolated.tmp / "data" / "fashion-mnist"
    target.mkdir(parents=True)
    (target / mnist.IDX_FILES[0]).write_bytes((mirror / mnist.IDX_FILES[0]).read_bytes())

    load_source("fmnist", root=str(isolated.tmp / "data"), download=True)
    assert sorted(requested) == sorted(f"/{name}" for name in mnist.IDX_FILES[1:])
    assert all((target / name).is_file() for name in mnist.IDX_FILES)
    assert not isolated.cache.exists()


def test_cifar10_archive_downloads(isolated, make_cifar, serve, monkeypatch):
    mirror = isolated.tmp / "mirror"
    make_cifar(mirror, cifar.CIFAR10_LAYOUT, n=3)
    url, _ = serve(mirror)
    monkeypatch.setenv("LIFELONG_MIRROR_CIFAR10", url)
    _published(monkeypatch, cifar, "CIFAR10", mirror)
    data = load_source("cifar10", download=True)
    assert data.train_x.shape == (15, 3, 32, 32)
    assert (isolated.cache / "cifar10" / cifar.CIFAR10_LAYOUT.archive).is_file()


def test_checksum_mismatch_deletes_the_file_and_raises(isolated, make_mnist, serve, monkeypatch):
    mirror = isolated.tmp / "mirror"
    make_mnist(mirror)
    url, _ = serve(mirror)
    monkeypatch.setenv("LIFELONG_MIRROR_MNIST", url)
    _published(monkeypatch, mnist, "MNIST", mirror)
    files = list(mnist.MNIST.files)
    files[1] = (files[1][0], "0" * 32)
    monkeypatch.setattr(mnist, "MNIST", dataclasses.replace(mnist.MNIST, files=tuple(files)))

    with pytest.raises(ChecksumError, match="does not match the published 0{32}"):
        load_source("mnist", download=True)
    target = isolated.cache / "mnist"
    assert (target / mnist.IDX_FILES[0]).is_file()  # verified before the bad one: kept
    assert not (target / mnist.IDX_FILES[1]).exists()
    assert _no_partial_files(isolated.tmp)


def test_download_file_is_atomic_and_checked(isolated, serve):
    (isolated.tmp / "srv").mkdir()
    (isolated.tmp / "srv" / "blob.bin").write_bytes(b"x" * 3_000_000)
    url, _ = serve(isolated.tmp / "srv")
    md5 = hashlib.md5(b"x" * 3_000_000).hexdigest()
    dest = download_file(f"{url}/blob.bin", isolated.tmp / "out" / "blob.bin", md5)
    assert dest.read_bytes() == b"x" * 3_000_000
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin"]


def test_http_error_is_dataset_not_found(isolated, serve, monkeypatch):
    (isolated.tmp / "empty").mkdir()
    url, requested = serve(isolated.tmp / "empty")
    monkeypatch.setenv("LIFELONG_MIRROR_CIFAR100", url)
    with pytest.raises(DatasetNotFoundError, match="failed .*404"):
        load_source("cifar100", download=True)
    assert requested == ["/cifar-100-python.tar.gz"]


def test_refused_connection_is_dataset_not_found(isolated, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("LIFELONG_MIRROR_MNIST", f"http://127.0.0.1:{port}")
    expected = rf"downloading from http://127.0.0.1:{port}/ failed"
    with pytest.raises(DatasetNotFoundError, match=expected):
        load_source("mnist", download=True)


def test_stalled_server_times_out_into_dataset_not_found(isolated, monkeypatch):
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 0.3)
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setenv("LIFELONG_MIRROR_MNIST", f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(DatasetNotFoundError, match="timed out"):
            load_source("mnist", download=True)
    assert _no_partial_files(isolated.tmp)


def test_hanging_name_lookup_times_out_into_dataset_not_found(isolated, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(download.socket, "getaddrinfo", lambda *a, **k: release.wait(30))
    monkeypatch.setenv("LIFELONG_MIRROR_FASHION_MNIST", "http://mirror.example/fashion")
    try:
        with pytest.raises(DatasetNotFoundError, match="looking up mirror.example took longer"):
            load_source("fashion-mnist", download=True)
    finally:
        release.set()


def test_download_false_makes_no_request(isolated, make_mnist, serve, monkeypatch):
    make_mnist(isolated.tmp / "mirror")
    url, requested = serve(isolated.tmp / "mirror")
    monkeypatch.setenv("LIFELONG_MIRROR_MNIST", url)
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load_source("mnist", download=False)
    assert requested == []
