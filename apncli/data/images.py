"""Decode whatever a fact-checker found on the internet into an H×W×3 uint8 RGB array, or say why not.

Every failure becomes an :class:`ImageError` with a one-line reason; no Pillow exception or traceback
escapes, because one bad file must become one error record, not the end of a scan. The decoder is strict
on purpose: truncated files are rejected (never ``LOAD_TRUNCATED_IMAGES``), because a half-grey image
fed to the detector would produce a confident verdict about pixels that are not in the file. Pixels come
only from the file bytes; the one piece of metadata honoured is the EXIF orientation. Pillow's global
settings are never touched, so importing this module changes nothing else in the process.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError, features

from apncli.data.jpeg import missing_only_eoi
from apncli.errors import ImageError, one_line

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest width × height decoded (100 MP): checked on the declared size, before any pixel is decoded."""

_MAX_FRAMES_COUNTED = 1000
"""Cap on frames counted by seeking (TIFF), whose page walk is quadratic in Pillow."""

_MAX_MESSAGE = 300

# Formats recognised by their magic bytes; the decoder tries only these (never EPS, which runs
# Ghostscript, nor the dozens of exotic plugins Pillow ships).
_SIGNED_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png", ".apng"),
    "WEBP": (".webp",),
    "GIF": (".gif",),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
    "PPM": (".ppm", ".pgm", ".pbm", ".pnm"),
    "ICO": (".ico",),
}
# HEIC/HEIF (phone photos) through pillow-heif's Pillow plugin: registering it is the one change this module
# makes to Pillow's global state. AVIF is Pillow's own (11.3+).
pillow_heif.register_heif_opener()
_SIGNED_FORMATS["HEIF"] = (".heic", ".heif", ".hif")

# Image formats recognised by name that this build cannot decode: folder scans still pick them up, so each
# gets a record saying so instead of being silently left out.
_UNSUPPORTED_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG XL": (".jxl",),
    "camera raw": (".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".srw", ".pef"),
    "Photoshop": (".psd", ".psb"),
    "SVG": (".svg", ".svgz"),
}
for _fmt, _exts, _available in (
    ("JPEG2000", (".jp2", ".j2k", ".jpx", ".jpf"), features.check_codec("jpg_2000")),
    ("AVIF", (".avif",), features.check("avif")),
):
    (_SIGNED_FORMATS if _available else _UNSUPPORTED_FORMATS)[_fmt] = _exts

# Formats without a real signature: almost any binary blob passes their header check, so they are tried
# only when the file name says so, lest random bytes "decode" into a picture.
_UNSIGNED_FORMATS: dict[str, tuple[str, ...]] = {
    "TGA": (".tga", ".icb", ".vda", ".vst"),
    "DIB": (".dib",),
}

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    ext for table in (_SIGNED_FORMATS, _UNSIGNED_FORMATS) for exts in table.values() for ext in exts
)
"""Lower-case suffixes (with the dot) of files this build decodes; compare with ``suffix.lower()``."""

_UNSUPPORTED_BY_SUFFIX: dict[str, str] = {
    ext: fmt for fmt, exts in _UNSUPPORTED_FORMATS.items() for ext in exts
}

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

ALPHA_BACKGROUND = 255
"""Grey level (white) that images with transparency are composited onto before analysis."""

#: How Pillow starts the message for a file whose pixel data stops before the image is complete.
_PILLOW_TRUNCATED = "image file is truncated"

# Magic numbers, used only to word errors ("truncated or corrupt PNG") when Pillow cannot even open a file.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


@dataclass(frozen=True)
class DecodedImage:
    """Pixels of the first frame, upright, plus what the file said about itself.

    ``pixels`` is a writable, C-contiguous H×W×3 uint8 RGB array; ``width``/``height`` describe it (after
    EXIF rotation). ``mode`` is the file's own pixel mode (e.g. ``"I;16"``, ``"CMYK"``) before conversion;
    ``frames`` is the number of frames found (a lower bound when later frames are damaged or very many).
    An image with an alpha channel is composited onto :data:`ALPHA_BACKGROUND` (what a viewer shows on a
    white page), so colours hidden under transparent pixels never reach the detector; ``has_alpha`` says
    whether the file has alpha and ``transparent_fraction`` is the share of its pixels that are not fully
    opaque (0.0 without alpha).
    """

    pixels: np.ndarray
    width: int
    height: int
    format: str
    mode: str
    frames: int
    has_alpha: bool = False
    transparent_fraction: float = 0.0


@dataclass(frozen=True)
class Windows:
    """A request for square windows of an image instead of all its pixels (see :func:`decode_windows`).

    ``place(height, width, sample)`` returns the top-left corners (y, x) of the ``size``×``size`` windows,
    given the upright image size and ``sample``: every ``step``-th pixel of every ``step``-th row, an
    ⌈H/step⌉×⌈W/step⌉×3 uint8 RGB array (equal to ``pixels[::step, ::step]`` of the whole image).
    """

    size: int
    step: int
    place: Callable[[int, int, np.ndarray], list[tuple[int, int]]]


@dataclass(frozen=True)
class DecodedWindows:
    """The windows a :class:`Windows` request placed, cut from a decoded file without converting the whole
    image to NumPy, and the upright image's size. Files with alpha are always decoded whole, hence the
    constant alpha fields (they answer as :class:`DecodedImage`'s do).

    ``windows`` are C-contiguous ``size``×``size``×3 uint8 RGB copies, the same pixels as the same windows
    of ``decode_image(path).pixels``; ``positions`` their top-left corners (y, x) in the upright image.
    """

    windows: list[np.ndarray]
    positions: list[tuple[int, int]]
    width: int
    height: int
    has_alpha: ClassVar[bool] = False
    transparent_fraction: ClassVar[float] = 0.0


def is_image_name(name: str | os.PathLike[str]) -> bool:
    """Whether a file name says image (case-insensitive): :data:`IMAGE_EXTENSIONS` or a known image format
    this build cannot decode (which then gets an "unsupported image format" record, not silence)."""
    suffix = Path(name).suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in _UNSUPPORTED_BY_SUFFIX


def decode_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode the file at ``path`` (format from its content, not its name) or raise :class:`ImageError`."""
    return _whole(_open_file(path, lambda fh, suffix: _decode_stream(fh, max_pixels, suffix, None)))


def decode_windows(path: str | os.PathLike[str], windows: Windows,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode the file at ``path`` and cut the windows ``windows.place`` picks, converting only them.

    The whole image is never copied into NumPy (the copy costs 5-7 ms and 36 MB per 12 MP): the windows
    are cropped from the decoder's own image and ``place`` sees a 1-in-``step`` subsample. Pixels are the
    same as ``decode_image``'s. Images this does not apply to come back whole, as ``decode_image`` gives
    them: any mode but plain RGB (alpha, grey, 16-bit, palette, CMYK), EXIF-rotated ones, and images
    smaller than a window on either side (they need wrap padding). Raises :class:`ImageError`.
    """
    return _open_file(path, lambda fh, suffix: _decode_stream(fh, max_pixels, suffix, windows))


Decoded = DecodedImage | DecodedWindows


def _open_file(path: str | os.PathLike[str], decode: Callable[[BinaryIO, str], Decoded]) -> Decoded:
    """Open ``path`` safely (no FIFOs, devices, folders or empty files) and ``decode(fh, suffix)`` it."""
    # O_NONBLOCK: opening a FIFO named "photo.jpg" must not wait forever for a writer.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        with os.fdopen(os.open(path, flags), "rb") as fh:
            info = os.fstat(fh.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise ImageError("is a directory")
            if not stat.S_ISREG(info.st_mode):
                # FIFOs and devices could block forever or never end.
                raise ImageError("not a regular file")
            if info.st_size == 0:
                raise ImageError("empty file")
            return decode(fh, Path(os.fsdecode(path)).suffix)
    except ImageError:
        raise
    except OSError as exc:
        raise ImageError(describe_os_error(exc)) from exc


def decode_bytes(
    data: bytes | bytearray | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS, *, name: str | None = None
) -> DecodedImage:
    """Decode an in-memory file; ``name`` (optional) only enables signature-less formats such as TGA."""
    if len(data) == 0:
        raise ImageError("empty file")
    suffix = Path(name).suffix if name else ""
    return _whole(_decode_stream(io.BytesIO(bytes(data)), max_pixels, suffix, None))


def _whole(decoded: Decoded) -> DecodedImage:
    """A decode without a windows request always gives the whole image."""
    assert isinstance(decoded, DecodedImage)
    return decoded


def _formats_for(suffix: str) -> tuple[str, ...]:
    """Formats Pillow may try for a file with this suffix: all signed ones, plus a matching unsigned one."""
    unsigned = tuple(fmt for fmt, exts in _UNSIGNED_FORMATS.items() if suffix.lower() in exts)
    return (*_SIGNED_FORMATS, *unsigned)


def _decode_stream(fh: BinaryIO, max_pixels: int, suffix: str, windows: Windows | None) -> Decoded:
    """Open, size-check, fully decode and convert (the whole image, or only ``windows`` where they apply);
    every foreign exception becomes an ImageError."""
    stage, fmt = "open", _sniff(fh)
    try:
        with Image.open(fh, formats=list(_formats_for(suffix))) as im:
            fmt = im.format or "image"
            _check_size(im.size, max_pixels)
            stage = "decode"
            im.load()
            stage = "convert"
            mode = im.mode
            if windows is not None and _cuttable(im, windows.size):
                return _cut_windows(im, windows)
            rgb, alpha = _to_rgb(im)
            pixels = _apply_orientation(rgb, _orientation(im))
            frames = _count_frames(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # warning if escalated
        raise ImageError(_bomb_reason(exc, max_pixels)) from exc
    except UnidentifiedImageError as exc:
        unsupported = _UNSUPPORTED_BY_SUFFIX.get(suffix.lower())
        if fmt == "image" and unsupported:
            raise ImageError(f"unsupported image format: {unsupported} ({suffix.lower()}) cannot be "
                             "decoded by this build; convert it to PNG or TIFF") from exc
        if fmt == "image":
            raise ImageError("not an image (unrecognised format)") from exc
        if fmt == "TIFF" and _unsupported_tiff_mode(fh):
            raise ImageError("unsupported pixel format (a TIFF sample layout with no Pillow mode)") from exc
        raise ImageError(f"truncated or corrupt {fmt}: unreadable header") from exc
    except MemoryError as exc:
        raise ImageError(f"out of memory while decoding {fmt}") from exc
    except Exception as exc:  # Pillow raises anything from OSError to struct.error on hostile input
        repaired = _restore_eoi(fh) if stage == "decode" and fmt == "JPEG" else None
        if repaired is not None:  # complete but for the end marker: the very pixels of the intact file
            return _decode_stream(io.BytesIO(repaired), max_pixels, suffix, windows)
        raise ImageError(_describe(exc, stage, fmt)) from exc
    height, width = pixels.shape[:2]
    transparent = 0.0 if alpha is None else float(np.count_nonzero(alpha < 255)) / alpha.size
    return DecodedImage(pixels=pixels, width=width, height=height, format=fmt, mode=mode, frames=frames,
                        has_alpha=alpha is not None, transparent_fraction=transparent)


def _cuttable(im: Image.Image, size: int) -> bool:
    """Whether windows can be cut straight from the decoder's image: plain RGB, upright, no smaller than a
    window on either side (everything else needs the conversions and padding of the whole-image path)."""
    return im.mode == "RGB" and _orientation(im) == 1 and min(im.size) >= size


def _cut_windows(im: Image.Image, windows: Windows) -> DecodedWindows:
    """The windows ``windows.place`` picks, each cropped by Pillow and converted alone."""
    width, height = im.size
    step = windows.step
    # Nearest-neighbour affine sampling at x·step (the -(step-1)/2 offset cancels Pillow's pixel-centre
    # rounding): exactly pixels[::step, ::step], without converting the whole image.
    sample_size = (-(-width // step), -(-height // step))
    offset = -(step - 1) / 2
    sample = np.asarray(im.transform(sample_size, Image.Transform.AFFINE, (step, 0, offset, 0, step, offset),
                                     resample=Image.Resampling.NEAREST))
    positions = windows.place(height, width, sample)
    size = windows.size
    cut = [np.array(im.crop((x, y, x + size, y + size)), dtype=np.uint8) for y, x in positions]
    return DecodedWindows(windows=cut, positions=positions, width=width, height=height)


def _unsupported_tiff_mode(fh: BinaryIO) -> bool:
    """Whether a TIFF Pillow refused has an intact header but a sample layout it has no pixel mode for."""
    from PIL import TiffImagePlugin

    fh.seek(0)
    try:
        TiffImagePlugin.TiffImageFile(fh)
    except SyntaxError as exc:
        return "pixel mode" in str(exc)
    except Exception:
        return False
    return False


def _restore_eoi(fh: BinaryIO) -> bytes | None:
    """The file's bytes with the EOI marker restored if that is all a JPEG lacks (see ``data.jpeg``)."""
    fh.seek(0)
    return missing_only_eoi(fh.read(), _jpeg_pixels)


def _jpeg_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
        im.load()
        return np.asarray(im)


def _sniff(fh: BinaryIO) -> str:
    """The format the first bytes claim, or ``"image"``; for wording errors only, never for decoding."""
    head = fh.read(16)
    fh.seek(0)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), "image")


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse decompression bombs from the declared size, before a single pixel is decoded."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} exceeds {max_pixels / 1e6:g} MP limit")


def _to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert any Pillow mode to RGB uint8 (scaling high bit depths rather than clipping them), with
    alpha composited onto :data:`ALPHA_BACKGROUND`; returns the pixels and the alpha plane (or None)."""
    mode = im.mode
    if mode.startswith("I;16"):
        # Pillow's own convert() clips 16-bit values at 255; keep the high byte instead, as Pillow does
        # for 16-bit colour, so grey and colour 16-bit files get the same scaling.
        return _gray_to_rgb((np.asarray(im) >> 8).astype(np.uint8)), None
    if mode == "I":  # 32-bit integers: read as 16-bit data, saturating outside 0..65535
        return _gray_to_rgb((np.clip(np.asarray(im), 0, 65535) >> 8).astype(np.uint8)), None
    if mode == "F":  # floating point conventionally spans [0, 1]
        values = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return _gray_to_rgb(np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)), None
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        return _composite(rgba), rgba[..., 3]
    rgb = im if mode == "RGB" else im.convert("RGB")
    return np.array(rgb, dtype=np.uint8), None


def _composite(rgba: np.ndarray) -> np.ndarray:
    """RGBA → RGB over the background: what is seen, so hidden colours of transparent pixels drop out."""
    alpha = rgba[..., 3:].astype(np.uint16)
    mixed = rgba[..., :3].astype(np.uint16) * alpha + ALPHA_BACKGROUND * (255 - alpha)
    return ((mixed + 127) // 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1–8), or 1 when absent or unreadable: broken EXIF must not sink good pixels."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# EXIF orientation → the view that makes the array upright (same results as ImageOps.exif_transpose).
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip so the array is upright, then make it C-contiguous (copying only if rotated)."""
    return np.ascontiguousarray(_ORIENT[orientation](pixels) if orientation in _ORIENT else pixels)


def _count_frames(im: Image.Image) -> int:
    """Frames in the file, cheaply: header counts where the format has them, a capped walk for TIFF."""
    try:
        if not getattr(im, "is_animated", False):
            return 1
        if im.format != "TIFF":
            return int(getattr(im, "n_frames", 1))
        while im.tell() + 1 < _MAX_FRAMES_COUNTED:
            im.seek(im.tell() + 1)
    except Exception:
        pass  # a damaged later frame: report what was reached
    try:
        return im.tell() + 1
    except Exception:
        return 1


def _bomb_reason(exc: Exception, max_pixels: int) -> str:
    """Pillow refuses huge sizes (over 2 × its MAX_IMAGE_PIXELS) while opening, before our own check."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if match is None:
        return one_line(f"image too large: {exc}", limit=_MAX_MESSAGE)
    pixels = int(match.group(1))
    if pixels > max_pixels:
        return f"image too large: {pixels} pixels exceeds {max_pixels / 1e6:g} MP limit"
    return f"image too large: {pixels} pixels exceeds the decoder's decompression-bomb limit"


def _describe(exc: BaseException, stage: str, fmt: str) -> str:
    """One line that says what went wrong, in terms a fact-checker can act on.

    Pillow's "image file is truncated (6 bytes not processed)" counts the bytes left in its own buffer,
    not what the file lacks, so it becomes "the image data ends early"; other messages are kept.
    """
    detail = str(exc) or type(exc).__name__
    if detail.startswith(_PILLOW_TRUNCATED):
        detail = "the image data ends early"
    if stage in ("open", "decode"):
        return one_line(f"truncated or corrupt {fmt}: {detail}", limit=_MAX_MESSAGE)
    return one_line(f"unsupported {fmt} pixel data: {detail}", limit=_MAX_MESSAGE)


def describe_os_error(exc: OSError) -> str:
    """``no such file or directory`` rather than ``[Errno 2] No such file or directory: '/x'``.

    The path is left out because every report already shows it (escaped, see ``display_path``).
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    return one_line(reason[:1].lower() + reason[1:], limit=_MAX_MESSAGE)

