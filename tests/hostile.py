"""A reproducible corpus of hostile image files, for tests that must prove the tool never crashes or hangs.

``make_hostile_corpus(root)`` writes a few hundred small files under ``root`` and returns
``{relative name: expected outcome}``:

* ``"ok"``: a valid (if odd) image that must decode;
* ``"error"``: must be reported as a file-level error (``ImageError`` / an error record);
* ``"any"``: damaged in a way a decoder may or may not tolerate (bit flips, trailing bytes cut off); either
  outcome is fine, a crash, a traceback or a hang is not.

Names are relative to ``root`` and may contain surrogate escapes (one file name is not valid UTF-8), so
join them with ``root / name``. The corpus also holds a dangling symlink and, where the OS has them, a FIFO
named like an image: code that opens files naively will block on it (tests should run under a timeout).
Everything is built in memory with a fixed seed in well under a second.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, features

OK, ERROR, ANY = "ok", "error", "any"
SEED = 20240601

_TRUNCATE_FRACTIONS = (0.05, 0.25, 0.5, 0.75, 0.9)
_TAIL_CUTS = (1, 2, 7)
_BIT_FLIP_VARIANTS = 15
_SPAN_VARIANTS = 5


def make_hostile_corpus(root: Path) -> dict[str, str]:
    """Write the corpus under ``root`` (created if needed) and return name → expected outcome."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    corpus: dict[str, str] = {}

    def put(name: str, data: bytes, outcome: str) -> None:
        (root / name).write_bytes(data)
        corpus[name] = outcome

    noise = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    bases = _base_files(noise)
    for name, data in bases.items():
        put(f"valid_{name}", data, OK)
    for name, data in _odd_valid_files(rng).items():
        put(name, data, OK)
    for name, data in bases.items():
        _damage(put, name, data, rng)
    for name, data in _wrong_names(bases).items():
        put(name, data, OK)
    for name, (data, outcome) in _not_images().items():
        put(name, data, outcome)
    for name, data in _bombs(bases).items():
        put(name, data, ERROR)
    for name, (data, outcome) in _structural(bases, rng).items():
        put(name, data, outcome)
    _special_files(root, bases["png.png"], corpus)
    return corpus


def _encode(arr: np.ndarray | Image.Image, fmt: str, **params: object) -> bytes:
    """Encode with Pillow into bytes."""
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _base_files(noise: np.ndarray) -> dict[str, bytes]:
    """One small noisy image per format: noise makes pixel data dominate, so cuts land inside it."""
    files = {
        "jpg.jpg": _encode(noise, "JPEG", quality=90),
        "progressive.jpg": _encode(noise, "JPEG", quality=90, progressive=True),
        "png.png": _encode(noise, "PNG"),
        "lossy.webp": _encode(noise, "WEBP", quality=80),
        "lossless.webp": _encode(noise, "WEBP", lossless=True),
        "gif.gif": _encode(noise, "GIF"),
        "tif.tif": _encode(noise, "TIFF"),
        "lzw.tiff": _encode(noise, "TIFF", compression="tiff_lzw"),
        "bmp.bmp": _encode(noise, "BMP"),
    }
    return files


def _odd_valid_files(rng: np.random.Generator) -> dict[str, bytes]:
    """Unusual but legitimate images: extreme sizes, bit depths, modes, animation, EXIF rotation."""
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    gray16 = rng.integers(0, 65536, (12, 16), dtype=np.uint16)
    rgb16 = rng.integers(0, 65536, (12, 16, 3), dtype=np.uint16)
    big_endian = Image.frombytes("I;16B", (16, 12), gray16.astype(">u2").tobytes())  # convert() would clip
    files = {
        "one_pixel.png": _encode(small[:1, :1], "PNG"),
        "one_pixel.jpg": _encode(small[:1, :1], "JPEG"),
        "one_pixel.gif": _encode(small[:1, :1], "GIF"),
        "one_pixel.bmp": _encode(small[:1, :1], "BMP"),
        "wide_1x100000.png": _encode(np.zeros((1, 100_000, 3), np.uint8), "PNG"),
        "tall_100000x1.png": _encode(np.zeros((100_000, 1), np.uint8), "PNG"),
        "gray16.png": _encode(Image.fromarray(gray16), "PNG"),
        "gray16.tif": _encode(Image.fromarray(gray16), "TIFF"),
        "gray16_bigendian.tif": _encode(big_endian, "TIFF"),
        "float32.tif": _encode(Image.fromarray(gray16.astype(np.float32) / 65535), "TIFF"),
        "rgb16.png": _cv2_encode(".png", rgb16),
        "rgba16.png": _cv2_encode(".png", np.dstack([rgb16, gray16])),
        "rgb16.tif": _cv2_encode(".tif", rgb16),
        "cmyk.jpg": _encode(Image.fromarray(small).convert("CMYK"), "JPEG"),
        "cmyk.tif": _encode(Image.fromarray(small).convert("CMYK"), "TIFF"),
        "palette_alpha.png": _palette_with_transparency(small),
        "la.png": _encode(Image.fromarray(small).convert("LA"), "PNG"),
        "rgba.png": _encode(Image.fromarray(small).convert("RGBA"), "PNG"),
        "rgba.webp": _encode(Image.fromarray(small).convert("RGBA"), "WEBP", lossless=True),
        "bilevel.png": _encode(Image.fromarray(small).convert("1"), "PNG"),
        "bilevel.bmp": _encode(Image.fromarray(small).convert("1"), "BMP"),
        "gray.jpg": _encode(Image.fromarray(small).convert("L"), "JPEG"),
        "gray.pgm": _encode(Image.fromarray(small).convert("L"), "PPM"),
        "color.ppm": _encode(small, "PPM"),
        "icon.ico": _encode(small, "ICO", sizes=[(8, 8)]),
        "targa.tga": _encode(small, "TGA"),
        "animated.gif": _animated(small, "GIF"),
        "animated.webp": _animated(small, "WEBP"),
        "animated.png": _animated(small, "PNG"),
        "many_frames.gif": _many_frames_gif(300),
        "with_trailing_zip.jpg": _encode(small, "JPEG") + b"PK\x03\x04" + bytes(200),
        "garbage_exif.jpg": _jpeg_with_app1(_encode(small, "JPEG"), b"Exif\x00\x00" + rng.bytes(64)),
        "exif_orientation_99.jpg": _encode(small, "JPEG", exif=_exif({0x0112: 99})),
    }
    for orientation in range(2, 9):
        exif = _exif({0x0112: orientation})
        files[f"exif_orientation_{orientation}.jpg"] = _encode(small, "JPEG", exif=exif)
    if features.check_codec("jpg_2000"):
        files["jpeg2000.jp2"] = _encode(small, "JPEG2000")
    return files


def _cv2_encode(ext: str, arr: np.ndarray) -> bytes:
    """OpenCV writes 16-bit colour PNG/TIFF, which Pillow cannot create."""
    ok, buf = cv2.imencode(ext, arr)
    assert ok, f"cv2 could not encode {ext}"
    return buf.tobytes()


def _palette_with_transparency(arr: np.ndarray) -> bytes:
    img = Image.fromarray(arr).quantize(16)
    img.info["transparency"] = bytes([0] * 4 + [255] * 12)
    return _encode(img, "PNG", transparency=bytes([0] * 4 + [255] * 12))


def _animated(arr: np.ndarray, fmt: str) -> bytes:
    frames = [Image.fromarray(np.roll(arr, shift, axis=1)) for shift in range(4)]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _many_frames_gif(count: int) -> bytes:
    frames = [Image.new("L", (2, 2), value % 256) for value in range(count)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)


def _exif(tags: dict[int, int]) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    return exif.tobytes()


def _jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment right after SOI."""
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def _damage(put: Callable[[str, bytes, str], None], name: str, data: bytes, rng: np.random.Generator) -> None:
    """Truncations (fatal), trailing cuts and bit flips (either outcome is fine) of one valid file."""
    stem, ext = os.path.splitext(name)
    for fraction in _TRUNCATE_FRACTIONS:
        cut = data[: max(1, int(len(data) * fraction))]
        put(f"truncated_{int(fraction * 100):02d}pct_{stem}{ext}", cut, ERROR)
    for cut in _TAIL_CUTS:
        put(f"tail_cut_{cut}_{stem}{ext}", data[:-cut], ANY)
    for variant in range(_BIT_FLIP_VARIANTS):
        flipped = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            flipped[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        put(f"bitflip_{variant:02d}_{stem}{ext}", bytes(flipped), ANY)
    for variant in range(_SPAN_VARIANTS):
        smashed = bytearray(data)
        start = int(rng.integers(len(data)))
        span = rng.bytes(min(32, len(data) - start))
        smashed[start : start + len(span)] = span
        put(f"smashed_{variant:02d}_{stem}{ext}", bytes(smashed), ANY)


def _wrong_names(bases: dict[str, bytes]) -> dict[str, bytes]:
    """Valid images whose extension lies: decoding goes by content."""
    return {
        "png_named.jpg": bases["png.png"],
        "jpeg_named.png": bases["jpg.jpg"],
        "gif_named.webp": bases["gif.gif"],
        "webp_named.gif": bases["lossy.webp"],
        "tiff_named.bmp": bases["tif.tif"],
        "png_without_extension": bases["png.png"],
        "UPPER_CASE.JPG": bases["jpg.jpg"],
    }


def _not_images() -> dict[str, tuple[bytes, str]]:
    """Empty files, text, documents and magic-number stubs named like images."""
    rng = np.random.default_rng(SEED + 1)
    return {
        "empty.jpg": (b"", ERROR),
        "empty.png": (b"", ERROR),
        "empty.webp": (b"", ERROR),
        "empty_no_extension": (b"", ERROR),
        "text.jpg": (b"Hello, this is not a picture.\n" * 20, ERROR),
        "html.png": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", ERROR),
        "json.webp": (b'{"error": "rate limited"}', ERROR),
        "svg.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', ERROR),
        "pdf.tiff": (b"%PDF-1.7\n" + bytes(300), ERROR),
        "zip.gif": (b"PK\x03\x04" + bytes(300), ERROR),
        "heic_named.jpg": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200), ERROR),
        "random_bytes.jpg": (rng.bytes(2048), ERROR),
        "random_bytes.png": (rng.bytes(2048), ERROR),
        "random_bytes.tga": (rng.bytes(2048), ANY),
        "zeros.bmp": (bytes(4096), ERROR),
        "one_byte.jpg": (b"\xff", ERROR),
        "jpeg_magic_only.jpg": (b"\xff\xd8\xff", ERROR),
        "jpeg_soi_eoi.jpg": (b"\xff\xd8\xff\xd9", ERROR),
        "png_signature_only.png": (b"\x89PNG\r\n\x1a\n", ERROR),
        "gif_header_only.gif": (b"GIF89a", ERROR),
        "riff_webp_header_only.webp": (b"RIFF\x04\x00\x00\x00WEBP", ERROR),
        "tiff_header_only.tif": (b"II*\x00\x08\x00\x00\x00", ERROR),
        "bmp_magic_only.bmp": (b"BM", ERROR),
    }


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def handmade_png(width: int, height: int, idat: bytes, extra: bytes = b"") -> bytes:
    """A hand-made 8-bit RGB PNG whose header may declare any size, whatever the data holds."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + extra
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _tiff_gray(width: int, height: int, pixels: bytes, next_ifd: int = 0) -> bytes:
    """A hand-made uncompressed 8-bit grey TIFF (one strip); ``next_ifd=8`` makes an IFD loop."""
    count = 9
    data_offset = 8 + 2 + 12 * count + 4
    entries = [
        struct.pack("<HHII", 256, 4, 1, width),
        struct.pack("<HHII", 257, 4, 1, height),
        struct.pack("<HHIHH", 258, 3, 1, 8, 0),
        struct.pack("<HHIHH", 259, 3, 1, 1, 0),
        struct.pack("<HHIHH", 262, 3, 1, 1, 0),
        struct.pack("<HHII", 273, 4, 1, data_offset),
        struct.pack("<HHIHH", 277, 3, 1, 1, 0),
        struct.pack("<HHII", 278, 4, 1, height),
        struct.pack("<HHII", 279, 4, 1, len(pixels)),
    ]
    ifd = struct.pack("<H", count) + b"".join(entries) + struct.pack("<I", next_ifd)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + pixels


def _bombs(bases: dict[str, bytes]) -> dict[str, bytes]:
    """Tiny files declaring gigantic sizes: must be refused from the header, without decoding."""
    tiny_idat = zlib.compress(bytes(1024))
    jpeg = bytearray(bases["jpg.jpg"])
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 65_000, 65_000)
    gif = bytearray(bases["gif.gif"])
    gif[6:10] = struct.pack("<HH", 65_535, 65_535)
    bmp = bytearray(bases["bmp.bmp"])
    bmp[18:26] = struct.pack("<ii", 50_000, 50_000)
    vp8l_header = struct.pack("<BI", 0x2F, (16_383) | (16_383 << 14))
    webp_payload = b"VP8L" + struct.pack("<I", len(vp8l_header) + 64) + vp8l_header + bytes(64)
    return {
        "bomb_60000x60000.png": handmade_png(60_000, 60_000, tiny_idat),
        "bomb_11000x9500.png": handmade_png(11_000, 9_500, tiny_idat),
        "bomb_65000x65000.jpg": bytes(jpeg),
        "bomb_65535x65535.gif": bytes(gif),
        "bomb_50000x50000.bmp": bytes(bmp),
        "bomb_100000x100000.tif": _tiff_gray(100_000, 100_000, bytes(64)),
        "bomb_16384x16384.webp": b"RIFF" + struct.pack("<I", 4 + len(webp_payload)) + b"WEBP" + webp_payload,
    }


def _structural(bases: dict[str, bytes], rng: np.random.Generator) -> dict[str, tuple[bytes, str]]:
    """Files whose structure, not just their bytes, is hostile."""
    rows = b"".join(b"\x00" + bytes(rng.integers(0, 256, 3 * 8, dtype=np.uint8)) for _ in range(8))
    good_png = handmade_png(8, 8, zlib.compress(rows))
    bad_crc = bytearray(good_png)
    bad_crc[29] ^= 0xFF  # the IHDR CRC
    ztxt_bomb = _png_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(bytes(4_000_000), 9))
    short_idat = handmade_png(8, 8, zlib.compress(rows[: len(rows) // 2]))
    return {
        "handmade.png": (good_png, OK),
        "ihdr_bad_crc.png": (bytes(bad_crc), ERROR),
        # A complete zlib stream holding too few rows: Pillow zero-fills the rest. Never occurs by
        # truncation (cut files are caught), so it is tolerated rather than pinned.
        "idat_too_short.png": (short_idat, ANY),
        "ztxt_bomb.png": (handmade_png(8, 8, zlib.compress(rows), extra=ztxt_bomb), ANY),
        "handmade.tif": (_tiff_gray(8, 8, bytes(range(64))), OK),
        "ifd_loop.tif": (_tiff_gray(8, 8, bytes(range(64)), next_ifd=8), ANY),
        "strip_past_eof.tif": (_tiff_gray(64, 64, bytes(100)), ERROR),
    }


def _special_files(root: Path, png: bytes, corpus: dict[str, str]) -> None:
    """Names and file types that trip up path handling: non-UTF-8 bytes, dangling links, FIFOs."""
    odd_name = os.fsdecode(b"non-utf8-\xff\xfe-name.png")
    try:
        (root / odd_name).write_bytes(png)
        corpus[odd_name] = OK
    except (OSError, UnicodeError):  # file systems that insist on UTF-8 names (macOS)
        pass
    (root / "dangling_link.jpg").unlink(missing_ok=True)
    (root / "fifo.jpg").unlink(missing_ok=True)
    try:
        os.symlink(root / "does-not-exist.png", root / "dangling_link.jpg")
        corpus["dangling_link.jpg"] = ERROR
    except (OSError, NotImplementedError):
        pass
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo.jpg")
        corpus["fifo.jpg"] = ERROR
