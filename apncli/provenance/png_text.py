"""PNG text chunks (tEXt, zTXt, iTXt) and the eXIf chunk, read by walking the chunk list.

Pillow only reports text chunks placed after the image data once it has decoded the pixels, so the chunk
list is walked here instead: the pixel data is skipped with a seek, and every size is bounded (chunk count,
text size, decompressed size) so a hostile file cannot make the walk slow or large.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from apncli.provenance.classify import GENERATION_KEYS, classify_software, looks_like_generation_parameters
from apncli.provenance.model import DECLARED_AI, ProvenanceItem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 10_000
MAX_TEXT_BYTES = 1 << 20
MAX_ITEMS = 64
XMP_KEY = "XML:com.adobe.xmp"
_KEPT_TYPES = (b"tEXt", b"zTXt", b"iTXt", b"eXIf")
_SOFTWARE_KEYS = frozenset({"software", "source", "generator", "creation software", "creator tool"})


@dataclass
class PngMetadata:
    """What the chunk walk found: text items, raw XMP packets and the raw eXIf block."""

    items: list[ProvenanceItem] = field(default_factory=list)
    xmp_packets: list[str] = field(default_factory=list)
    exif: bytes | None = None


def read_png(path: Path) -> PngMetadata:
    """Walk the chunks of a PNG file; a malformed or truncated file yields an error item, not an exception."""
    meta = PngMetadata()
    try:
        with open(path, "rb") as stream:
            _walk(stream, meta)
    except (OSError, ValueError, zlib.error, struct.error) as exc:
        meta.items.append(ProvenanceItem.failure("png-text", "chunks", f"{type(exc).__name__}: {exc}"))
    return meta


def _walk(stream: BinaryIO, meta: PngMetadata) -> None:
    """Read chunk headers until IEND, keeping text/eXIf chunks and seeking over everything else."""
    if stream.read(8) != PNG_SIGNATURE:
        raise ValueError("not a PNG signature")
    for _ in range(MAX_CHUNKS):
        header = stream.read(8)
        if len(header) < 8:
            raise ValueError("file ends before IEND (truncated PNG)")
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return
        if kind in _KEPT_TYPES and length <= MAX_TEXT_BYTES and len(meta.items) < MAX_ITEMS:
            data = stream.read(length)
            if len(data) < length:
                raise ValueError(f"{kind.decode('latin-1')} chunk is truncated")
            _keep(kind, data, meta)
        else:
            if kind in _KEPT_TYPES and len(meta.items) < MAX_ITEMS:
                meta.items.append(ProvenanceItem.failure(
                    "png-text", kind.decode("latin-1"), f"{length}-byte chunk over the size limit; skipped"))
            stream.seek(length, 1)
        stream.seek(4, 1)  # CRC (not verified: a bad CRC does not make the declared text less declared)
    raise ValueError(f"more than {MAX_CHUNKS} chunks; stopped")


def _keep(kind: bytes, data: bytes, meta: PngMetadata) -> None:
    """Record one chunk's content; a malformed text chunk becomes an error item and the walk goes on."""
    if kind == b"eXIf":
        meta.exif = data
        return
    try:
        key, text = _decode_text(kind, data)
    except (ValueError, zlib.error) as exc:
        meta.items.append(ProvenanceItem.failure("png-text", kind.decode("latin-1"), str(exc)))
        return
    if key == XMP_KEY:
        meta.xmp_packets.append(text)
    else:
        meta.items.append(ProvenanceItem.text("png-text", key, text, classify_text(key, text)))


def _decode_text(kind: bytes, data: bytes) -> tuple[str, str]:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk (PNG spec §11.3.4)."""
    key_bytes, sep, rest = data.partition(b"\0")
    if not sep or not 1 <= len(key_bytes) <= 79:
        raise ValueError("text chunk without a valid keyword")
    key = key_bytes.decode("latin-1")
    if kind == b"tEXt":
        return key, rest.decode("latin-1")
    if kind == b"zTXt":
        return key, _inflate(rest[1:]).decode("latin-1")
    flag, rest = rest[:1], rest[2:]  # compression flag, compression method
    _language, _, rest = rest.partition(b"\0")
    _translated, _, body = rest.partition(b"\0")
    if flag == b"\x01":
        body = _inflate(body)
    return key, body.decode("utf-8", errors="replace")


def _inflate(data: bytes) -> bytes:
    """zlib-decompress at most ``MAX_TEXT_BYTES`` (a zip bomb is cut, not expanded)."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, MAX_TEXT_BYTES)
    if not inflater.eof and not inflater.unconsumed_tail:
        raise ValueError("compressed text ends early (damaged chunk)")
    return text


def classify_text(key: str, text: str) -> str | None:
    """Generation keys or parameter-shaped values declare AI; Software-like keys name a tool."""
    if key.lower() in GENERATION_KEYS or looks_like_generation_parameters(text):
        return DECLARED_AI
    if key.lower() in _SOFTWARE_KEYS:
        return classify_software(text)
    return None
