"""Turn the paths a user typed into a stream of candidate image files, without ever stopping on a bad one.

Problems (a missing path, an unreadable folder, a dangling link, a symlink loop) become candidates that
carry an ``error`` so the scan reports them as records instead of dying or silently skipping them. The
walk is a generator over one directory listing at a time, so a huge tree is never held in memory, and it
is iterative, so a pathologically deep tree cannot exhaust Python's recursion limit. Order is
deterministic: explicit paths in the order given, folder entries sorted by name, depth first.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from apncli.data.images import describe_os_error, is_image_name
from apncli.errors import UsageError

SYMLINK_LOOP = "symlink loop"


@dataclass(frozen=True)
class Candidate:
    """A file to analyse (``error is None``) or a path that could not be used, with the reason."""

    path: Path
    error: str | None = None


def display_path(path: str | bytes | os.PathLike[str]) -> str:
    """A printable, JSON-safe rendering of any path: bytes that are not UTF-8 show as ``\\xff`` escapes.

    ``str(path)`` of a non-UTF-8 name holds lone surrogates, which crash ``print`` and UTF-8 JSON writers.
    """
    try:
        raw = os.fsencode(path)
    except UnicodeError:  # a surrogate that no file system produced: escape it as text instead
        return os.fspath(path).encode("utf-8", errors="backslashreplace").decode("utf-8")
    return raw.decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (1-based, as ``split -n K/N``) of a scan split across machines.

    A candidate belongs to the part picked by the SHA-256 of its path as discovered (the ``path`` of its
    record), so the split depends neither on discovery order nor on the machine, and every candidate
    lands in exactly one part as long as every part is run with the same arguments from the same folder.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` with 1 <= K <= N; raises ``UsageError`` otherwise."""
        index, _, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            raise UsageError(f"--shard must look like K/N (e.g. 2/8), not {text!r}") from None
        if not 1 <= shard.index <= shard.count:
            raise UsageError(f"--shard {text}: K must be between 1 and N")
        return shard

    def holds(self, path: str | bytes | os.PathLike[str]) -> bool:
        """Whether the candidate at ``path`` belongs to this part."""
        digest = hashlib.sha256(display_path(path).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def discover(
    paths: Iterable[str | bytes | os.PathLike[str]] | str | bytes | os.PathLike[str], recursive: bool = False
) -> Iterator[Candidate]:
    """Yield candidates for ``paths``: explicit files always, image files inside folders.

    A folder contributes its direct image files, and with ``recursive`` its whole tree, following
    symlinked folders but reporting a link back into the current branch as a ``"symlink loop"``.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):  # one path, not an iterable of its characters
        paths = [paths]
    for raw in paths:
        if not os.fspath(raw):  # Path("") would silently mean the current folder
            yield Candidate(Path(), "empty path")
            continue
        path = Path(os.fsdecode(raw))
        try:
            info = path.stat()
        except OSError as exc:
            yield Candidate(path, _missing_reason(path, exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk(path, (info.st_dev, info.st_ino), recursive)
        elif stat.S_ISREG(info.st_mode):
            yield Candidate(path)
        else:
            yield Candidate(path, "not a regular file")


def _walk(root: Path, root_key: tuple[int, int], recursive: bool) -> Iterator[Candidate]:
    """Depth-first walk with an explicit stack; ``active`` holds the (device, inode) of open ancestors."""
    listing = _list_dir(root)
    if isinstance(listing, str):
        yield Candidate(root, listing)
        return
    stack: list[tuple[tuple[int, int], Iterator[os.DirEntry[str]]]] = [(root_key, iter(listing))]
    active = {root_key}
    while stack:
        key, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            active.discard(key)
            continue
        path = Path(entry.path)
        try:
            info = os.stat(entry.path)  # follows links: a link to a folder is a folder
        except OSError as exc:  # e.g. a path longer than PATH_MAX: a record, never a silent drop
            if is_image_name(entry.name) or (recursive and _listed_as_folder(entry)):
                yield Candidate(path, _missing_reason(path, exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            if not recursive:
                continue
            child_key = (info.st_dev, info.st_ino)
            if child_key in active:
                yield Candidate(path, SYMLINK_LOOP)
                continue
            child = _list_dir(path)
            if isinstance(child, str):
                yield Candidate(path, child)
                continue
            stack.append((child_key, iter(child)))
            active.add(child_key)
        elif is_image_name(entry.name):
            yield Candidate(path, None if stat.S_ISREG(info.st_mode) else "not a regular file")


def _listed_as_folder(entry: os.DirEntry[str]) -> bool:
    """Whether the directory listing itself says ``entry`` is a folder (no ``stat`` of its path)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _list_dir(path: Path) -> list[os.DirEntry[str]] | str:
    """One folder's entries sorted by name, or the reason it cannot be read."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda entry: entry.name)
    except OSError as exc:
        return describe_os_error(exc)


def _missing_reason(path: Path, exc: OSError) -> str:
    """Tell a dangling link or a link loop apart from a path that simply does not exist."""
    if exc.errno == errno.ELOOP:
        return SYMLINK_LOOP
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        is_link = False
    return "broken symbolic link" if is_link else describe_os_error(exc)
