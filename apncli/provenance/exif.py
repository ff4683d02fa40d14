"""EXIF fields that name the device or the software, read with Pillow without decoding any pixels."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from apncli.provenance.classify import classify_software, looks_like_generation_parameters
from apncli.provenance.model import CAMERA_METADATA, DECLARED_AI, ProvenanceItem

EXIF_IFD = 0x8769

# (tag, IFD: None = IFD0, EXIF_IFD = Exif sub-IFD, field name)
_FIELDS = (
    (0x010F, None, "Make"),
    (0x0110, None, "Model"),
    (0x0131, None, "Software"),
    (0x010E, None, "ImageDescription"),
    (0x9003, EXIF_IFD, "DateTimeOriginal"),
    (0x9286, EXIF_IFD, "UserComment"),
)

# EXIF UserComment starts with an 8-byte character-code prefix.
_COMMENT_CODES = {b"ASCII\0\0\0": "ascii", b"UNICODE\0": "utf-16", b"JIS\0\0\0\0\0": "shift_jis"}


def items_from_image(path: Path) -> list[ProvenanceItem]:
    """EXIF items of any format Pillow can open; opening reads headers only, never the pixel data."""
    try:
        with Image.open(path) as image:
            exif = image.getexif()
    except UnidentifiedImageError:  # not an image Pillow knows: nothing to read, and the scan says so
        return []
    except Exception as exc:  # Pillow raises many types for hostile files; none may stop a scan
        return [ProvenanceItem.failure("exif", "file", f"could not read image headers: {_reason(exc)}")]
    return items_from_exif(exif)


def items_from_exif_bytes(data: bytes) -> list[ProvenanceItem]:
    """EXIF items from a raw EXIF block (the PNG ``eXIf`` chunk)."""
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception as exc:  # malformed TIFF structure inside the block
        return [ProvenanceItem.failure("exif", "block", f"malformed EXIF: {_reason(exc)}")]
    return items_from_exif(exif)


def items_from_exif(exif: Image.Exif) -> list[ProvenanceItem]:
    """Items for the fields of ``_FIELDS`` that are present and non-empty."""
    try:
        sub_ifd = exif.get_ifd(EXIF_IFD)
    except Exception as exc:  # a broken Exif IFD pointer must not hide the IFD0 fields
        sub_ifd = {}
        broken = [ProvenanceItem.failure("exif", "ExifIFD", f"malformed: {_reason(exc)}")]
    else:
        broken = []
    items = []
    for tag, ifd, name in _FIELDS:
        value = _as_text(exif.get(tag) if ifd is None else sub_ifd.get(tag))
        if value:
            items.append(ProvenanceItem.text("exif", name, value, _classify(name, value)))
    return items + broken


def _classify(name: str, value: str) -> str | None:
    """Make/Model say "camera"; Software names a tool; free-text fields may hold generation parameters."""
    if name in ("Make", "Model"):
        return CAMERA_METADATA
    if name == "Software":
        return classify_software(value)
    if name in ("ImageDescription", "UserComment") and looks_like_generation_parameters(value):
        return DECLARED_AI
    return None


def _as_text(value: object) -> str:
    """Printable text of a tag value (bytes decoded, NUL padding and whitespace stripped)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = _decode_bytes(value)
    return str(value).replace("\x00", "").strip()


def _decode_bytes(raw: bytes) -> str:
    """Decode an UNDEFINED-typed value, honouring the UserComment character-code prefix."""
    codec = _COMMENT_CODES.get(raw[:8])
    if codec is None:
        return raw.decode("utf-8", errors="replace")
    body = raw[8:]
    if codec == "utf-16" and not body.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec = "utf-16-be" if body[:1] == b"\0" else "utf-16-le"
    return body.decode(codec, errors="replace")


def _reason(exc: BaseException) -> str:
    """One-line reason for an error item."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
