"""Run records: atomic writes of text, JSON, YAML and tensors, so a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lifelong.core.errors import RunExistsError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write JSON, indented, keys in insertion order."""
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def atomic_write_yaml(path: str | Path, obj: Any) -> Path:
    """Atomically write YAML (block style, keys in insertion order)."""
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def prepare_run_folder(folder: str | Path, overwrite: bool, *, holds: str = "files",
                       fix: str = "pass --overwrite to replace them or choose another --out") -> Path:
    """`folder` cleared for a new run: one holding files raises RunExistsError unless `overwrite`."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise RunExistsError(f"{folder} already holds {holds}; {fix}")
        shutil.rmtree(folder)
    return folder


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a line is written whole with one write call)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, in order (none when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def atomic_write_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Atomically write a matplotlib figure as PNG, then close it."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
