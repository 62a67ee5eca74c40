"""Where a file-based data set lives: local folders searched in order, else a verified download.

Search order for data set `<name>`: `root` itself, `root/<name>`, `$LIFELONG_DATA/<name>`,
`~/.cache/lifelong/<name>`, `/usr/share/datasets/<name>` (Debian's dataset-* packages). When none
holds the files and `download=True`, they are fetched from the mirror (overridable with
`$LIFELONG_MIRROR_<NAME>`) into `root/<name>`, or `~/.cache/lifelong/<name>` without a root.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lifelong.core.errors import DatasetNotFoundError
from lifelong.data.sources.download import download_file, file_md5

DATA_ENV = "LIFELONG_DATA"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


@dataclass(frozen=True)
class Location:
    """How a data set is recognised in a folder and where its published files are fetched from."""

    name: str  # canonical name, also the folder name
    files: tuple[tuple[str, str], ...]  # (published file name, published md5)
    mirror: str  # base URL the files are published under
    present: Callable[[Path], bool]  # does this folder hold the data (in any accepted form)
    install_hint: str = ""  # a package-manager command that installs the data, if any

    @property
    def mirror_env(self) -> str:
        """The environment variable overriding the mirror, e.g. LIFELONG_MIRROR_FASHION_MNIST."""
        return "LIFELONG_MIRROR_" + re.sub(r"\W", "_", self.name.upper())

    def base_url(self) -> str:
        """The mirror in use: `$LIFELONG_MIRROR_<NAME>` when set, else the official one."""
        return (os.environ.get(self.mirror_env) or self.mirror).rstrip("/")

    def urls(self) -> list[str]:
        """The URL of every published file, from the mirror in use."""
        return [f"{self.base_url()}/{file}" for file, _ in self.files]


def cache_dir() -> Path:
    """The per-user download cache, `~/.cache/lifelong`."""
    return Path.home() / ".cache" / "lifelong"


def search_dirs(name: str, root: str | Path | None = None) -> list[Path]:
    """The folders searched for data set `name`, first match wins (see the module docstring)."""
    dirs = []
    if root is not None:
        root = Path(root).expanduser()
        dirs += [root, root / name]
    if os.environ.get(DATA_ENV):
        dirs.append(Path(os.environ[DATA_ENV]).expanduser() / name)
    dirs += [cache_dir() / name, SYSTEM_DATA_DIR / name]
    return list(dict.fromkeys(dirs))


def download_dir(name: str, root: str | Path | None = None) -> Path:
    """Where downloads of `name` go: `root/<name>`, else `~/.cache/lifelong/<name>`."""
    return (Path(root).expanduser() if root is not None else cache_dir()) / name


def locate(location: Location, root: str | Path | None = None) -> Path | None:
    """The first searched folder holding the data set, or None."""
    return next(
        (d for d in search_dirs(location.name, root) if d.is_dir() and location.present(d)), None
    )


def fetch(location: Location, target: Path) -> Path:
    """Download every published file missing from `target` (or not matching its md5) into it."""
    for (file, md5), url in zip(location.files, location.urls(), strict=True):
        if not ((target / file).is_file() and file_md5(target / file) == md5):
            download_file(url, target / file, md5)
    return target


def require(location: Location, root: str | Path | None = None, download: bool = True) -> Path:
    """The folder holding the data set: found locally, else downloaded, else raise."""
    found = locate(location, root)
    if found is not None:
        return found
    reason = "downloading is off (download=False)"
    if download:
        try:
            return fetch(location, download_dir(location.name, root))
        except OSError as err:  # no network, refused, timed out, HTTP error
            reason = f"downloading from {location.base_url()}/ failed ({err})"
    raise DatasetNotFoundError(not_found_message(location, root, reason))


def not_found_message(location: Location, root: str | Path | None, reason: str) -> str:
    """Say where we looked, why nothing was fetched, and every way to get the data set."""
    name = location.name
    searched = ", ".join(str(d) for d in search_dirs(name, root))
    files = ", ".join(file for file, _ in location.files)
    install = (
        f"install it with `sudo {location.install_hint}` (puts it in {SYSTEM_DATA_DIR / name}); or "
        if location.install_hint
        else ""
    )
    return (
        f"data set {name!r} not found; searched {searched}; {reason}. To get it: {install}"
        f"download {files} from {location.base_url()}/ and put the files in "
        f"{download_dir(name, root)} (or in DIR/{name} after `export {DATA_ENV}=DIR`, or pass "
        f"root=DIR); or load it with download=True on a machine with internet access (set "
        f"{location.mirror_env} to use another mirror)"
    )
