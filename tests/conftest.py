"""Shared fixtures: every test is seeded, deterministic and single-threaded (xdist uses the cores)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
from pathlib import Path

import pytest
import torch

from lifelong.core.seeding import seed_everything
from lifelong.data.sources import mnist
from lifelong.data.sources.download import file_md5
from lifelong.data.sources.idx import decode_idx, idx_content
from lifelong.data.sources.mnist import IDX_FILES

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Seed every source and turn on deterministic algorithms for the test."""
    seed_everything(0, deterministic=True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def roundtrip():
    """A function passing a module's state_dict through torch.save and torch.load(weights_only=True)."""
    def through_bytes(module: torch.nn.Module) -> dict:
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=True)

    return through_bytes


@functools.cache
def _fashion():
    from lifelong.data.sources import load_source

    return load_source("fashion-mnist", download=False)


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST from the Debian package (installed by `make test`), loaded once per worker."""
    return _fashion()


class Interrupted(Exception):
    """Raised by `interrupted_run` in place of the work after a checkpoint."""


@pytest.fixture
def interrupted_run(monkeypatch):
    """`interrupted_run(config, saves=2, **run_kwargs)`: `continual.run.run` stopped right after its
    `saves`-th checkpoint is written, as a crash would; returns nothing, leaves the run folder."""
    import lifelong.continual.run as run_module

    def interrupted(config, saves: int = 2, **run_kwargs) -> None:
        real, written = run_module.save_checkpoint, []

        def save(*args, **kwargs):
            real(*args, **kwargs)
            written.append(1)
            if len(written) == saves:
                raise Interrupted

        with monkeypatch.context() as patch:
            patch.setattr(run_module, "save_checkpoint", save)
            with pytest.raises(Interrupted):
                run_module.run(config, **run_kwargs)

    return interrupted


@pytest.fixture
def trust_idx(monkeypatch: pytest.MonkeyPatch):
    """`trust_idx(folder, name)`: take the IDX files in `folder` as the published ones of `name`."""

    def trust(folder: Path, name: str) -> tuple[mnist.IdxFile, ...]:
        paths = [mnist.idx_path(folder, f) for f in IDX_FILES]
        contents = [idx_content(p.read_bytes()) for p in paths]
        files = mnist.idx_files(
            tuple(file_md5(p) for p in paths), tuple(hashlib.md5(c).hexdigest() for c in contents)
        )
        files = tuple(
            dataclasses.replace(f, samples=len(decode_idx(c))) for f, c in zip(files, contents, strict=True)
        )
        monkeypatch.setitem(mnist.IDX_DATASETS, name, files)
        return files

    return trust
