"""``read_provenance``: every metadata reader on one file, and the notes that keep the evidence honest."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from apncli.provenance import exif, xmp
from apncli.provenance.c2pa_reader import read_c2pa
from apncli.provenance.model import CAMERA_METADATA, NONE, C2PAStatus, Provenance, ProvenanceItem, summarize
from apncli.provenance.png_text import PNG_SIGNATURE, read_png

#: Files over this size are not read for metadata at all: the C2PA library holds ~3.3x a file in memory
#: (a small JPEG padded with 1 GiB peaked at 3.4 GB), and no camera or generator output comes near it.
MAX_METADATA_FILE_BYTES = 128 << 20
TOO_LARGE = "file too large"

# XMP sits near the start (JPEG, PNG, TIFF) or at the end (WebP); the middle of a big file is pixel data.
HEAD_BYTES = 4 << 20
TAIL_BYTES = 1 << 20

NOTE_DECLARED = (
    "Metadata is declared, not measured: anyone can write, copy or strip it, and apart from a valid C2PA "
    "signature nothing here is checked against the pixels. It never changes p_ai."
)
NOTE_ABSENT = (
    "No metadata declaring how the image was made was found. Absence proves nothing: most platforms, "
    "messengers and editors strip metadata."
)
NOTE_CAMERA = (
    "Camera make/model fields are easy to copy into any file; they do not show that the image is a "
    "photograph."
)
NOTE_C2PA_UNTRUSTED = (
    "The C2PA signature is intact but its signer is not on a trust list given to apn: anyone can sign with "
    "a self-made certificate, so the claims are only as good as the signer's name."
)
NOTE_C2PA_INVALID = (
    "The C2PA manifest failed validation (see c2pa.validation_status): the file was changed after signing "
    "or the manifest is damaged."
)
NOTE_ERRORS = "Some metadata could not be read (items with an \"error\"); a damaged block proves nothing."


def read_provenance(path: str | os.PathLike[str], *, c2pa_trust_anchors: str | None = None) -> Provenance:
    """Metadata evidence of one image file; never raises for bad or missing metadata or an unreadable file.

    ``c2pa_trust_anchors`` is a PEM bundle of root certificates whose signers count as trusted; without it no
    signer is trusted and a C2PA state of ``Valid`` (not ``Trusted``) is the best possible.
    """
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise OSError(f"not a regular file: {path}")
        if info.st_size > MAX_METADATA_FILE_BYTES:
            cap = MAX_METADATA_FILE_BYTES >> 20
            return _not_checked(TOO_LARGE, f"Provenance was not checked: file too large (over {cap} MiB).")
        head, tail = _bounded_bytes(path)
    except OSError as exc:
        return _not_checked("file could not be read", f"The file could not be read ({exc.strerror or exc}).")
    status, items = read_c2pa(path, c2pa_trust_anchors)
    items += _png_items(path) if head.startswith(PNG_SIGNATURE) else _other_items(path, head, tail)
    return Provenance(items, status, notes(items, status))


def _not_checked(reason: str, note: str) -> Provenance:
    return Provenance([], C2PAStatus(checked=False, error=reason), [note, NOTE_ABSENT])


def _bounded_bytes(path: Path) -> tuple[bytes, bytes]:
    """The first ``HEAD_BYTES`` and, for a bigger file, the last ``TAIL_BYTES`` (searched separately)."""
    with open(path, "rb") as stream:
        head = stream.read(HEAD_BYTES)
        size = os.fstat(stream.fileno()).st_size
        if size <= HEAD_BYTES:
            return head, b""
        stream.seek(max(HEAD_BYTES, size - TAIL_BYTES))
        return head, stream.read(TAIL_BYTES)


def _png_items(path: Path) -> list[ProvenanceItem]:
    """PNG: XMP from its iTXt chunk (possibly compressed), EXIF from eXIf, then the text chunks."""
    png = read_png(path)
    items = [item for packet in png.xmp_packets for item in xmp.items_from_packet(packet)]
    if png.exif is not None:
        items += exif.items_from_exif_bytes(png.exif)
    return items + png.items


def _other_items(path: Path, head: bytes, tail: bytes) -> list[ProvenanceItem]:
    """Any other format: XMP by byte search, EXIF through Pillow's header parser."""
    items = list(dict.fromkeys(xmp.items_from_bytes(head) + xmp.items_from_bytes(tail)))
    return items + exif.items_from_image(path)


def notes(items: list[ProvenanceItem], status: C2PAStatus) -> list[str]:
    """Plain-language caveats for a fact-checker, chosen from what was (not) found."""
    out = [NOTE_DECLARED]
    summary = summarize(items)
    if summary == NONE:
        out.append(NOTE_ABSENT)
    elif summary == CAMERA_METADATA:
        out.append(NOTE_CAMERA)
    if not status.checked:
        out.append(f"C2PA was not checked: {status.error}.")
    elif status.valid is False:
        out.append(NOTE_C2PA_INVALID)
    elif status.valid and not status.trusted:
        out.append(NOTE_C2PA_UNTRUSTED)
    if any(item.error for item in items) or (status.checked and status.error):
        out.append(NOTE_ERRORS)
    return out
