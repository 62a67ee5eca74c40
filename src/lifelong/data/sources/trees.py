"""A data set's folder of files, read alike from disk or in place from the published zip archive."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from lifelong.core.errors import DataError


class Tree(Protocol):
    """Files under one folder, named by their '/'-separated path relative to it."""

    where: str  # the folder, or `archive.zip:folder/`

    def names(self) -> list[str]:
        """Every file's relative path, sorted."""
        ...

    def describe(self, name: str) -> str:
        """Where file `name` lives, for messages."""
        ...

    def read(self, name: str) -> bytes:
        """The bytes of one file; an unreadable file raises DataError."""
        ...


class FolderTree:
    """The files under a folder on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def names(self) -> list[str]:
        found = []
        for parent, _, files in os.walk(self.root):
            rel = Path(parent).relative_to(self.root).as_posix()
            found += [f if rel == "." else f"{rel}/{f}" for f in files]
        return sorted(found)

    def describe(self, name: str) -> str:
        return str(self.root / name)

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as err:
            raise DataError(f"{self.describe(name)}: unreadable ({err})") from err


class ZipTree:
    """The files under one folder inside an open zip archive (nothing is extracted)."""

    def __init__(self, archive: zipfile.ZipFile, path: Path, prefix: str) -> None:
        self.archive, self.path, self.prefix = archive, path, prefix
        self.where = f"{path}:{prefix}"

    def names(self) -> list[str]:
        return sorted(
            info.filename.removeprefix(self.prefix)
            for info in self.archive.infolist()
            if info.filename.startswith(self.prefix) and not info.is_dir()
        )

    def describe(self, name: str) -> str:
        return f"{self.where}{name}"

    def read(self, name: str) -> bytes:
        try:
            return self.archive.read(self.prefix + name)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, RuntimeError, NotImplementedError) as err:
            raise DataError(
                f"{self.describe(name)}: unreadable member ({err}); delete {self.path.name} and fetch "
                f"it again"
            ) from err


@contextmanager
def open_tree(folder: Path | None, archive: Path, members: Sequence[str]) -> Iterator[Tree]:
    """`folder` when given (extracted), else the first folder of `members` inside zip `archive`."""
    if folder is not None:
        yield FolderTree(folder)
        return
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(
            f"{archive}: unreadable zip archive ({err}); delete it and fetch it again"
        ) from err
    with zf:
        tops = {name.split("/", 1)[0] for name in zf.namelist() if "/" in name}
        prefix = next((m for m in members if m in tops), None)
        if prefix is None:
            raise DataError(
                f"{archive}: the archive holds no folder {' or '.join(map(repr, members))} (it has "
                f"{sorted(tops) or 'no folders'}); delete it and fetch it again"
            )
        yield ZipTree(zf, archive, prefix + "/")
