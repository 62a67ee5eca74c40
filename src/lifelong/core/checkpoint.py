"""Checkpoints: tensors and plain values only, so they load with `torch.load(weights_only=True)`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from lifelong.core.errors import CheckpointError
from lifelong.core.records import atomic_write_bytes

FORMAT_VERSION = 2  # 2: multi-task checkpoints hold torch's generator, the monitor's pairs, run extras


def save_checkpoint(path: str | Path, state: dict[str, Any], config: dict[str, Any]) -> Path:
    """Atomically write `state` with the format version and the resolved config."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, "config": config, "state": state}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, config) from a checkpoint; a corrupt or foreign file raises CheckpointError."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"no checkpoint at {path}; run without --resume to start afresh") from exc
    except Exception as exc:  # torch raises many types for a damaged archive
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}); it is left in place — "
            "move it away and run again to restart the run from the beginning"
        ) from exc
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"checkpoint {path} is not a lifelong checkpoint; start the run afresh in another "
                              "folder")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {payload['format_version']}, but this version of "
                              f"lifelong reads format {FORMAT_VERSION}; resume it with the version that wrote it, "
                              "or start the run afresh (--overwrite)")
    return payload["state"], payload["config"]
