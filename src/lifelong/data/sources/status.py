"""`source_status`: is a registered data set on this machine, and where (`lifelong datasets`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lifelong.core.registries import SOURCES
from lifelong.data.sources.resolve import download_dir, locate, search_dirs


def source_status(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """Report a data set's local state: present, path, searched folders, download target, URLs.

    File-based sources declare a `location` (a `resolve.Location`) in their registry metadata; a
    source without one (e.g. `digits`, shipped in scikit-learn) is bundled, hence always present.
    """
    canonical = SOURCES.canonical(name)
    location = SOURCES.meta(canonical).get("location")
    if location is None:
        return {
            "name": canonical,
            "present": True,
            "bundled": True,
            "path": None,
            "searched": [],
            "download_to": None,
            "urls": [],
        }
    path = locate(location, root)
    return {
        "name": canonical,
        "present": path is not None,
        "bundled": False,
        "path": None if path is None else str(path),
        "searched": [str(d) for d in search_dirs(canonical, root)],
        "download_to": str(download_dir(canonical, root)),
        "urls": location.urls(),
    }
