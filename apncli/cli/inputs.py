"""What ``apn scan`` is asked to read, gathered and checked before any model is loaded.

Paths come from the command line, from standard input (``-``) or from a list file (``--files-from``),
one per line or NUL-separated (``-0``, as ``find -print0`` writes them). A quick survey of them then
answers, in milliseconds, what would otherwise cost a model load: is there anything to scan at all?
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from apncli.data.discover import Survey, survey
from apncli.errors import UsageError

STDIN = "-"


def gather(paths: Sequence[str], files_from: Path | None, null_separated: bool) -> list[str]:
    """Every input path, in order: arguments (``-`` stands for the list on stdin), then ``--files-from``.

    Raises ``UsageError`` when there is no input at all (naming the lists that held no path), when stdin
    is asked for twice or is a terminal, or when the list file cannot be read.
    """
    if null_separated and STDIN not in paths and files_from is None:
        raise UsageError("-0 reads NUL-separated paths from a list: give - (stdin) or --files-from FILE")
    sources = list(paths) + ([str(files_from)] if files_from is not None else [])
    if sources.count(STDIN) > 1:
        raise UsageError("standard input can be read once: give - or --files-from - , not both")
    out: list[str] = []
    for raw in paths:
        out.extend(_read_list(STDIN, null_separated) if raw == STDIN else [raw])
    if files_from is not None:
        out.extend(_read_list(str(files_from), null_separated))
    if not out:
        raise UsageError(_nothing_given(sources))
    return out


def _nothing_given(sources: Sequence[str]) -> str:
    """Why there is no input: no argument at all, or lists (stdin, ``--files-from``) that held no path."""
    if not sources:
        return ("nothing to scan: give image files or folders, - to read paths from stdin, "
                "or --files-from FILE")
    lists = ["standard input" if source == STDIN else f"--files-from {source}" for source in sources]
    return f"nothing to scan: {' and '.join(lists)} held no paths"


def _read_list(source: str, null_separated: bool) -> list[str]:
    """Paths listed in ``source`` (``-``: stdin), bytes decoded as the OS does; empty entries dropped."""
    if source == STDIN:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("- reads paths from standard input, but it is a terminal; pipe a list in, e.g. "
                             "find DIR -name '*.jpg' -print0 | apn scan -0 -")
        return _split(_binary(sys.stdin).read(), null_separated)
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --files-from {source}: {exc.strerror or exc}") from exc
    return _split(data, null_separated)


def _binary(stream: object) -> BinaryIO:
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else stream  # type: ignore[return-value]


def _split(data: bytes | str, null_separated: bool) -> list[str]:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    separator = b"\0" if null_separated else b"\n"
    entries = raw.split(separator)
    if not null_separated:
        entries = [entry.removesuffix(b"\r") for entry in entries]
    return [os.fsdecode(entry) for entry in entries if entry]


def preflight(paths: Sequence[str], recursive: bool) -> Survey:
    """Survey the inputs; refuse at once (``UsageError``, exit 2) when none of them can be scanned.

    The message names what was found instead: each path that could not be used, and the sub-folders
    and other files a folder walk passed over (with the hint to use ``-r``).
    """
    found = survey(paths, recursive)
    if found.readable:
        return found
    raise UsageError(nothing_to_scan(found, recursive))


def nothing_to_scan(found: Survey, recursive: bool) -> str:
    """One line: the paths that could not be used, or "0 images; 3 sub-folders skipped (use -r ...)"."""
    if found.problems:
        shown = "; ".join(f"{c.display}: {c.error}" for c in found.problems[:3])
        more = f" (and {found.candidates - 3} more)" if found.candidates > 3 else ""
        parts = [f"nothing could be read: {shown}{more}"]
    else:
        parts = ["nothing to scan: 0 images"]
    if found.skipped_folders and not recursive:
        parts.append(f"{_count(found.skipped_folders, 'sub-folder')} skipped (use -r to scan them)")
    if found.skipped_files:
        parts.append(f"{_count(found.skipped_files, 'other file')} skipped (not an image name)")
    return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
