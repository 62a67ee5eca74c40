"""Data-source test fixtures: isolated search folders, generated IDX/CIFAR files, a server."""

from __future__ import annotations

import io
import pickle
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lifelong.data.sources import resolve
from lifelong.data.sources.cifar import CifarLayout
from lifelong.data.sources.core50 import OBJECTS
from lifelong.data.sources.idx import write_idx
from lifelong.data.sources.mnist import IDX_FILES


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """HOME, the system data folder and every data/mirror/proxy variable pointed into tmp_path."""
    home, system = tmp_path / "home", tmp_path / "system"
    home.mkdir()
    system.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(resolve, "SYSTEM_DATA_DIR", system)
    for var in ("LIFELONG_DATA", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for name in ("MNIST", "FASHION_MNIST", "CIFAR10", "CIFAR100", "CORE50", "CLEAR10", "CLEAR100"):
        monkeypatch.delenv(f"LIFELONG_MIRROR_{name}", raising=False)
    return SimpleNamespace(
        home=home, cache=home / ".cache" / "lifelong", system=system, tmp=tmp_path
    )


def _write_mnist(
    folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write four small IDX files (random 28x28 uint8 images, labels 0-9) into `folder`."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for published, array in zip(IDX_FILES, arrays.values(), strict=True):
        write_idx(folder / (published if gz else published.removesuffix(".gz")), array)
    return arrays


@pytest.fixture
def make_mnist():
    """`make_mnist(folder, n_train=12, n_test=5, gz=True, seed=0)` → the arrays written."""
    return _write_mnist


def _cifar_members(layout: CifarLayout, n: int, n_classes: int, seed: int) -> dict[str, object]:
    """Unpickled CIFAR members: batches of random pixels and labels, and the meta dict."""
    rng = np.random.default_rng(seed)
    members: dict[str, object] = {}
    for name in (*layout.train, *layout.test):
        fine = rng.integers(0, n_classes, n)
        members[name] = {
            "batch_label": f"batch {name}",
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            layout.label_key: fine.tolist(),
            "coarse_labels": (n_classes - 1 - fine).tolist(),  # differs from fine: must be ignored
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
    members[layout.meta] = {
        layout.names_key: [f"class_{i}" for i in range(n_classes)],
        "coarse_label_names": [f"super_{i}" for i in range(n_classes)],
    }
    return members


def write_cifar_members(
    folder: Path, layout: CifarLayout, raw: dict[str, bytes], archive: bool = True
) -> Path:
    """Write pickled members as the published tar.gz (or the extracted folder) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if not archive:
        (folder / layout.folder).mkdir(exist_ok=True)
        for name, blob in raw.items():
            (folder / layout.folder / name).write_bytes(blob)
        return folder / layout.folder
    with tarfile.open(folder / layout.archive, "w:gz") as tar:
        for name, blob in raw.items():
            info = tarfile.TarInfo(f"{layout.folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return folder / layout.archive


def _write_cifar(
    folder: Path,
    layout: CifarLayout,
    n: int = 4,
    n_classes: int = 10,
    archive: bool = True,
    seed: int = 0,
) -> dict[str, object]:
    """Write a small CIFAR-format data set; return the unpickled members written."""
    members = _cifar_members(layout, n, n_classes, seed)
    write_cifar_members(folder, layout, {k: pickle.dumps(v) for k, v in members.items()}, archive)
    return members


@pytest.fixture
def make_cifar():
    """`make_cifar(folder, layout, n=4, n_classes=10, archive=True, seed=0)` → members written."""
    return _write_cifar


@pytest.fixture
def cifar_writer():
    """`write_cifar_members(folder, layout, {member: pickled bytes}, archive=True)`."""
    return write_cifar_members


def _py2_pickle(data: np.ndarray, labels: list[int], label_key: str) -> bytes:
    """A pickle as Python 2's cPickle wrote CIFAR batches: protocol 2, str keys, numpy.core path."""

    def text(s: bytes) -> bytes:  # SHORT_BINSTRING or BINSTRING: a Python 2 str
        if len(s) < 256:
            return b"U" + bytes([len(s)]) + s
        return b"T" + len(s).to_bytes(4, "little") + s

    def small(i: int) -> bytes:  # BININT1
        assert 0 <= i < 256
        return b"K" + bytes([i])

    # dtype('u1', 0, 1) with its state (3, '|', None, None, None, -1, -1, 0)
    dtype = b"".join(
        [b"cnumpy\ndtype\n", text(b"u1"), small(0), small(1), b"\x87R"]
        + [b"(", small(3), text(b"|"), b"NNN", b"J\xff\xff\xff\xff" * 2, small(0), b"tb"]
    )
    # _reconstruct(ndarray, (0,), 'b') with state (1, shape, dtype, False, raw bytes)
    shape = b"".join(b"J" + d.to_bytes(4, "little") for d in data.shape)
    array = b"".join(
        [b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n", small(0), b"\x85"]
        + [text(b"b"), b"\x87R", b"(", small(1), b"(", shape, b"t", dtype, b"\x89"]
        + [text(data.tobytes()), b"tb"]
    )
    label_list = b"](" + b"".join(small(v) for v in labels) + b"e"
    return b"\x80\x02}(" + text(b"data") + array + text(label_key.encode()) + label_list + b"u."


@pytest.fixture
def py2_pickle():
    """`py2_pickle(uint8 data (N, D), labels, label_key)` → bytes as Python 2 wrote them."""
    return _py2_pickle


@pytest.fixture
def serve() -> Iterator:
    """`serve(directory)` → (base URL, list of requested paths); servers stop at teardown."""
    running = []

    def start(directory: Path) -> tuple[str, list[str]]:
        requested: list[str] = []

        class Handler(SimpleHTTPRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                requested.append(self.path)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}", requested

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def png(rgb: np.ndarray) -> bytes:
    """The PNG encoding of an (H, W, 3) uint8 image."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def jpeg(rgb: np.ndarray) -> bytes:
    """The JPEG encoding (best quality) of an (H, W, 3) uint8 image."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=100)
    return out.getvalue()


def write_files(target: Path, files: dict[str, bytes], archive: bool) -> Path:
    """Write `files` (relative path → bytes) under folder `target`, or as the zip `target`."""
    if archive:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w") as zf:
            for name, blob in files.items():
                zf.writestr(name, blob)
        return target
    for name, blob in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(blob)
    return target


def core50_colour(session: int, obj: int, frame: int) -> tuple[int, int, int]:
    """The flat colour of the fake CORe50 image of (session, object, frame): it encodes all three."""
    return 20 * session, 5 * obj, 50 * frame


def _core50_images(sessions=range(1, 12), frames: int = 1, side: int = 8) -> dict[str, np.ndarray]:
    """Flat-colour fake CORe50 images of every object, keyed by their published relative path."""
    return {
        f"s{s}/o{o}/C_{s:02d}_{o:02d}_{f:03d}.png": np.full((side, side, 3), core50_colour(s, o, f), np.uint8)
        for s in sessions
        for o in range(1, len(OBJECTS) + 1)
        for f in range(frames)
    }


def _write_core50(folder: Path, form: str = "folder", images: dict[str, np.ndarray] | None = None) -> dict:
    """Write fake CORe50 images in one published form: `folder` (core50_128x128/), `flat` (the
    session folders directly in `folder`), `zip` (core50_128x128.zip) or `npz` (+ paths.pkl)."""
    images = _core50_images() if images is None else images
    if form == "npz":
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "core50_imgs.npz", x=np.stack(list(images.values())))
        (folder / "paths.pkl").write_bytes(pickle.dumps(list(images), protocol=2))
        return images
    files = {name: png(rgb) for name, rgb in images.items()}
    if form == "flat":
        write_files(folder, files, archive=False)
    elif form == "zip":
        write_files(folder / "core50_128x128.zip", {f"core50_128x128/{n}": b for n, b in files.items()}, True)
    else:
        write_files(folder / "core50_128x128", files, archive=False)
    return images


@pytest.fixture
def core50_images():
    """`core50_images(sessions=range(1, 12), frames=1, side=8)` → {relative path: flat image}."""
    return _core50_images


@pytest.fixture
def make_core50():
    """`make_core50(folder, form="folder", images=None)` → the images written, by relative path."""
    return _write_core50


CLEAR_CLASSES = ("BACKGROUND", "baseball", "bus")


def clear_colour(bucket: int, label: int, test: bool) -> tuple[int, int, int]:
    """The flat colour of a fake CLEAR image: it encodes the bucket, the label and the split."""
    return 40 * bucket, 60 * label, 100 + 100 * test


def _clear_files(test: bool, buckets=(1, 2, 3), per_class: int = 2, classes=CLEAR_CLASSES,
                side: int = 12) -> dict[str, bytes]:
    """One fake CLEAR split: class_names.txt and labeled_images/<bucket>/<class>/<id>.jpg."""
    files = {"class_names.txt": "".join(f"{c}\n" for c in classes).encode()}
    for b in buckets:
        for label, name in enumerate(classes):
            for k in range(per_class):
                rgb = np.full((side, side + 4, 3), clear_colour(b, label, test), np.uint8)
                files[f"labeled_images/{b}/{name}/{1000 * b + 10 * label + k}.jpg"] = jpeg(rgb)
    return files


def _write_clear(folder: Path, archive: bool = False, variant: str = "clear10", train_dir: str = "train_image_only",
                 train: dict[str, bytes] | None = None, test: dict[str, bytes] | None = None) -> None:
    """Write a fake CLEAR training and test set as extracted folders or as the published zips."""
    train = _clear_files(test=False) if train is None else train
    test = _clear_files(test=True, per_class=1) if test is None else test
    if archive:
        write_files(folder / f"{variant}-train-image-only.zip", {f"{train_dir}/{n}": b for n, b in train.items()}, True)
        write_files(folder / f"{variant}-test.zip", {f"test/{n}": b for n, b in test.items()}, True)
    else:
        write_files(folder / train_dir, train, archive=False)
        write_files(folder / "test", test, archive=False)


@pytest.fixture
def clear_files():
    """`clear_files(test, buckets=(1, 2, 3), per_class=2, classes=..., side=12)` → {path: bytes}."""
    return _clear_files


@pytest.fixture
def make_clear():
    """`make_clear(folder, archive=False, variant="clear10", train_dir=..., train=None, test=None)`."""
    return _write_clear
