"""Fetch one published file over HTTP(S): bounded waits, md5 check, atomic rename into place."""

from __future__ import annotations

import hashlib
import http.client
import os
import queue
import socket
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from rich.progress import Progress

from lifelong.core.errors import ChecksumError

# Seconds to wait for a name lookup, a connection or any single read before giving up.
TIMEOUT_SECONDS = 10.0
_CHUNK = 1 << 20


def file_md5(path: str | Path) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _connect_host(url: str) -> tuple[str, int]:
    """The host and port urllib will connect to for `url`: its proxy's when one applies."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _resolve_within(url: str, timeout: float) -> None:
    """Look the host up in a daemon thread: socket timeouts do not cover DNS, which can hang."""
    host, port = _connect_host(url)
    outcome: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome.put(None)
        except OSError as err:
            outcome.put(err)

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    try:
        error = outcome.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"looking up {host} took longer than {timeout:g} s") from None
    if error is not None:
        raise error


def download_file(url: str, dest: str | Path, md5: str, timeout: float | None = None) -> Path:
    """Download `url` to `dest` through a temporary `.part` file renamed only once its md5 matches.

    Network failures raise `OSError` (URLError, TimeoutError, ConnectionError); a wrong md5
    deletes the partial file and raises `ChecksumError`.
    """
    dest = Path(dest)
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    _resolve_within(url, timeout)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(url, timeout=timeout) as resp:
            size = int(resp.headers.get("Content-Length") or 0) or None
            with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task(f"downloading {dest.name}", total=size)
                while chunk := resp.read(_CHUNK):
                    digest.update(chunk)
                    fh.write(chunk)
                    bar.advance(task, len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        if digest.hexdigest() != md5:
            raise ChecksumError(
                f"{url}: md5 {digest.hexdigest()} does not match the published {md5}; the partial "
                f"file was deleted. Retry later, or set the mirror variable to another copy"
            )
        os.replace(part, dest)
    except http.client.HTTPException as err:  # e.g. IncompleteRead: not an OSError
        raise ConnectionError(f"{url}: {type(err).__name__}: {err}") from err
    finally:
        Path(part).unlink(missing_ok=True)
    return dest
