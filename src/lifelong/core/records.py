"""Run records: atomic writes of text, JSON, YAML and tensors, so a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lifelong.core.errors import ConfigError, DataError, RunExistsError

RUN_FILES = ("config.yaml", "results.json", "checkpoint.pt", "metrics.jsonl", "compare.json")  # one marks a run


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


def check_run_folder(folder: str | Path) -> Path:
    """`folder` as a Path; a ConfigError when it, or the nearest existing folder above it, is a file."""
    folder = Path(folder)
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"{path} is a file, so {folder} cannot hold a run; choose another --out")
            break
    return folder


def remove_run_folder(folder: str | Path) -> None:
    """Delete a previous run's folder; refused for one holding no run file (`RUN_FILES`) or the working folder."""
    folder = Path(folder)
    here = Path.cwd().resolve()
    if folder.resolve() == here or folder.resolve() in here.parents:
        raise ConfigError(f"replacing {folder} would delete the working folder {here}; give --out a folder of its own")
    if not any((folder / name).exists() for name in RUN_FILES):
        raise RunExistsError(f"{folder} holds files but no lifelong run (none of {', '.join(RUN_FILES)}), so "
                             "--overwrite leaves it alone; choose another --out or --name")
    shutil.rmtree(folder)


def prepare_run_folder(folder: str | Path, overwrite: bool, *, holds: str = "files",
                       fix: str = "pass --overwrite to replace them or choose another --out") -> Path:
    """`folder` cleared for a new run: one holding files raises RunExistsError unless `overwrite` (and it
    holds a run: see `remove_run_folder`)."""
    folder = check_run_folder(folder)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise RunExistsError(f"{folder} already holds {holds}; {fix}")
        remove_run_folder(folder)
    return folder


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a line is written whole with one write call)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, in order (none when it does not exist). A last line cut short
    (a crash during `append_jsonl`) is dropped; another line that is not JSON raises a DataError."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise DataError(f"{path}: line {number} is not JSON ({err.msg}); the file is damaged: remove that "
                            "line, or rerun with --overwrite") from err
    return records


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
