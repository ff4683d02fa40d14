"""Verified, resumable, lock-protected download of one pinned file.

The guarantees, and why each exists:
- ``dest`` only ever appears by ``os.replace`` of a file whose size and sha256 matched, so a crash, a
  truncated transfer or a lying server can never leave a bad file where the cache looks.
- Bytes go to ``dest.partial``; a later attempt resumes it with an HTTP Range request, so a dropped
  connection 300 MB into a backbone does not restart from zero.
- The registered size is a hard cap: a server that sends more is cut off, never filling the disk.
- Every socket read has a timeout, so a stalled server fails the attempt instead of hanging the CLI.
- An ``fcntl`` lock on ``dest.lock`` serialises processes (and threads with their own descriptors)
  fetching the same file; whoever waits finds the finished file and downloads nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

import apncli
from apncli.errors import DownloadError, one_line

CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


class _Retryable(Exception):
    """A failure that another attempt may fix (dropped connection, stall, truncation, bad hash)."""


def download(url: str, dest: str | os.PathLike[str], sha256: str, size: int, *, retries: int = 3,
             timeout: float = 30.0, backoff: float = 1.0, progress: bool | None = None) -> Path:
    """Fetch ``url`` to ``dest`` and return ``dest``; raise DownloadError after ``1 + retries`` attempts.

    ``timeout`` bounds each connect and each socket read, not the whole transfer. ``progress`` None
    shows a bar only when stderr is a terminal.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with _locked(dest.with_name(dest.name + ".lock")):
        if dest.exists():
            if _matches(dest, sha256, size):
                return dest  # another process finished it while we waited for the lock
            dest.unlink()
        last = "no attempt made"
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))
            try:
                _fetch(url, partial, size, timeout, progress)
                _verify(partial, sha256, size)
            except _Retryable as exc:
                last = str(exc)
                continue
            os.replace(partial, dest)
            _fsync_dir(dest.parent)
            return dest
    raise DownloadError(f"could not download {url}: {last} (after {retries + 1} attempt(s))")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive advisory lock; the lock file stays behind on purpose (deleting it would race)."""
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fetch(url: str, partial: Path, size: int, timeout: float, progress: bool | None) -> None:
    """One attempt: resume or start ``partial`` and stream until ``size`` bytes or an error."""
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > size:
        partial.unlink()
        offset = 0
    if offset == size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": f"apn/{apncli.__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            offset = _resume_point(response, offset, partial)
            _check_announced_length(response, offset, size, partial)
            _stream(response, partial, offset, size, progress)
    except urllib.error.HTTPError as exc:
        _http_failure(exc, partial)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _Retryable(_describe(exc, timeout)) from None


def _resume_point(response: http.client.HTTPResponse, offset: int, partial: Path) -> int:
    """Where this response's bytes start: our offset if the server honoured Range, else zero."""
    if offset and response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return offset
        raise _Retryable(f"server answered the resume request with a mismatched range "
                         f"{response.headers.get('Content-Range')!r}")
    if offset:
        partial.unlink(missing_ok=True)  # server ignored Range and sends the whole file
    return 0


def _check_announced_length(response: http.client.HTTPResponse, offset: int, size: int,
                            partial: Path) -> None:
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and offset + int(length) > size:
        partial.unlink(missing_ok=True)
        raise _Retryable(f"server announces {offset + int(length)} bytes, the registered size is {size}")


def _stream(response: http.client.HTTPResponse, partial: Path, offset: int, size: int,
            progress: bool | None) -> None:
    """Append the body to ``partial``, cutting the transfer off the moment it exceeds ``size``."""
    show = sys.stderr.isatty() if progress is None else progress
    written = offset
    with open(partial, "ab" if offset else "wb") as out, tqdm(
        total=size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=partial.name[:-8],
        file=sys.stderr, disable=not show, leave=False,
    ) as bar:
        while chunk := response.read(min(CHUNK, size - written + 1)):
            written += len(chunk)
            if written > size:
                out.close()
                partial.unlink(missing_ok=True)
                raise _Retryable(f"server sent more than the registered size of {size} bytes")
            out.write(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    if written < size:
        raise _Retryable(f"transfer ended after {written} of {size} bytes")


def _verify(partial: Path, sha256: str, size: int) -> None:
    """A complete file with the wrong hash is discarded, never resumed or kept."""
    actual = file_digest(partial)
    if partial.stat().st_size != size or actual != sha256:
        partial.unlink(missing_ok=True)
        raise _Retryable(f"sha256 mismatch: expected {sha256}, got {actual}")


def _matches(path: Path, sha256: str, size: int) -> bool:
    return path.stat().st_size == size and file_digest(path) == sha256


def file_digest(path: Path) -> str:
    """Streamed hex sha256 (no torch import, so downloads work without the model stack)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _http_failure(exc: urllib.error.HTTPError, partial: Path) -> None:
    """Retry what a server may recover from; a 404 or 403 will not change, so fail at once."""
    exc.close()
    if exc.code == 416:  # our partial is not a prefix the server recognises: start over
        partial.unlink(missing_ok=True)
        raise _Retryable("server rejected the resume range (HTTP 416)")
    if exc.code in _RETRYABLE_HTTP:
        raise _Retryable(f"HTTP {exc.code} {exc.reason}")
    raise DownloadError(f"could not download {exc.url}: HTTP {exc.code} {exc.reason}")


def _describe(exc: BaseException, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.timeout | TimeoutError):
        return f"server stalled: no data for {timeout:g} s (timeout)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (server down?)"
    return one_line(reason) or type(reason).__name__


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
