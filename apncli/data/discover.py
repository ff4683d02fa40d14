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
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from apncli.data.images import describe_os_error, is_image_name
from apncli.errors import UsageError

SYMLINK_LOOP = "symlink loop"
URL_NOT_FETCHED = "URLs are not fetched; download the file and scan the local copy"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

#: What a folder walk passes over without making a candidate: sub-folders (without ``recursive``) and
#: files whose names are not image names. ``on_skip`` receives one of these per skipped entry.
SKIPPED_FOLDER = "folder"
SKIPPED_FILE = "file"


@dataclass(frozen=True)
class Candidate:
    """A file to analyse (``error is None``) or a path that could not be used, with the reason."""

    path: Path
    error: str | None = None
    typed: str | None = None  # what the user typed, when ``path`` cannot show it (a URL: ``//`` collapses)

    @property
    def display(self) -> str:
        """The printable, JSON-safe name reports use for this candidate."""
        return self.typed if self.typed is not None else display_path(self.path)


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
    paths: Iterable[str | bytes | os.PathLike[str]] | str | bytes | os.PathLike[str], recursive: bool = False,
    on_skip: Callable[[str], None] | None = None,
) -> Iterator[Candidate]:
    """Yield candidates for ``paths``: explicit files always, image files inside folders.

    A folder contributes its direct image files, and with ``recursive`` its whole tree, following
    symlinked folders but reporting a link back into the current branch as a ``"symlink loop"``.
    ``on_skip`` is told (``SKIPPED_FOLDER`` / ``SKIPPED_FILE``) about each folder entry passed over.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):  # one path, not an iterable of its characters
        paths = [paths]
    for raw in paths:
        if not os.fspath(raw):  # Path("") would silently mean the current folder
            yield Candidate(Path(), "empty path")
            continue
        text = os.fsdecode(raw)
        path = Path(text)
        try:
            info = path.stat()
        except OSError as exc:
            if _URL.match(text):
                yield Candidate(path, URL_NOT_FETCHED, typed=display_path(text))
            else:
                yield Candidate(path, _missing_reason(path, exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk(path, (info.st_dev, info.st_ino), recursive, on_skip or _ignore)
        elif stat.S_ISREG(info.st_mode):
            yield Candidate(path)
        else:
            yield Candidate(path, "not a regular file")


def _ignore(kind: str) -> None:
    """The default ``on_skip``: nobody is counting."""


def _walk(root: Path, root_key: tuple[int, int], recursive: bool,
          on_skip: Callable[[str], None]) -> Iterator[Candidate]:
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
            else:
                on_skip(SKIPPED_FILE)
            continue
        if stat.S_ISDIR(info.st_mode):
            if not recursive:
                on_skip(SKIPPED_FOLDER)
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
        else:
            on_skip(SKIPPED_FILE)


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


@dataclass
class Survey:
    """A quick first look at what ``discover`` will yield, taken before any model is loaded.

    ``complete`` is False when the walk ran out of its time or count budget: then ``candidates`` is a
    lower bound and ``paths`` is empty, and only ``readable`` (at least one usable file seen) is certain.
    """

    candidates: int = 0
    readable: int = 0
    problems: list[Candidate] = field(default_factory=list)  # candidates that already carry an error
    skipped_folders: int = 0
    skipped_files: int = 0
    complete: bool = True
    paths: list[Path] = field(default_factory=list)  # every candidate, when complete

    def note_skip(self, kind: str) -> None:
        if kind == SKIPPED_FOLDER:
            self.skipped_folders += 1
        else:
            self.skipped_files += 1


def survey(paths: Iterable[str | bytes | os.PathLike[str]], recursive: bool = False, *,
           budget_s: float = 1.0, max_candidates: int = 200_000) -> Survey:
    """Walk ``paths`` as :func:`discover` would, for at most ``budget_s`` seconds / ``max_candidates``.

    Cheap on the folders people point a scanner at (a few thousand files: milliseconds), and bounded
    on huge trees, where it stops early and says so (``complete=False``).
    """
    found = Survey()
    deadline = time.monotonic() + budget_s
    for candidate in discover(paths, recursive, on_skip=found.note_skip):
        found.candidates += 1
        if candidate.error is None:
            found.readable += 1
        elif len(found.problems) < 100:
            found.problems.append(candidate)
        found.paths.append(candidate.path)
        if found.candidates >= max_candidates or time.monotonic() > deadline:
            found.complete, found.paths = False, []
            break
    return found
