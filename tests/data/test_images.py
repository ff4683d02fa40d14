"""Decoding: each hostile file decodes or fails with a one-line ImageError; valid oddities decode right."""

from __future__ import annotations

import contextlib
import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile import ANY, ERROR, OK, handmade_png, make_hostile_corpus
from PIL import Image, ImageFile, ImageOps

from apncli.data import images
from apncli.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    DecodedImage,
    DecodedWindows,
    Windows,
    decode_bytes,
    decode_image,
    decode_windows,
    is_image_name,
)
from apncli.errors import ImageError

PER_FILE_SECONDS = 2.0  # generous: the machine is shared; typical decodes take milliseconds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile")
    return root, make_hostile_corpus(root)


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _check_decoded(result: DecodedImage) -> None:
    pixels = result.pixels
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.flags.c_contiguous and pixels.flags.writeable
    assert (result.height, result.width) == pixels.shape[:2]
    assert result.frames >= 1 and result.format and result.mode


def test_corpus_is_large_and_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    corpus = make_hostile_corpus(tmp_path)
    assert time.perf_counter() - start < 5.0
    assert len(corpus) >= 200
    assert set(corpus.values()) == {OK, ERROR, ANY}


def test_every_hostile_file_decodes_or_raises_image_error(corpus: tuple[Path, dict[str, str]]) -> None:
    root, expected = corpus
    wrong, slow = [], []
    for name, outcome in expected.items():
        start = time.perf_counter()
        try:
            result = decode_image(root / name)
        except ImageError as exc:
            message = str(exc)
            assert message and "\n" not in message and "\r" not in message, (name, message)
            got = ERROR
        else:  # any other exception fails the test with its traceback, which is the point
            _check_decoded(result)
            got = OK
        elapsed = time.perf_counter() - start
        if elapsed > PER_FILE_SECONDS:
            slow.append((ascii(name), round(elapsed, 2)))
        if outcome != ANY and got != outcome:
            wrong.append((ascii(name), outcome, got))
    assert not wrong, wrong
    assert not slow, slow


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.jpg", "empty file"),
        ("text.jpg", "not an image (unrecognised format)"),
        ("bomb_60000x60000.png", "image too large: 3600000000 pixels exceeds 100 MP limit"),
        ("bomb_11000x9500.png", "image too large: 11000x9500 exceeds 100 MP limit"),
        ("png_signature_only.png", "truncated or corrupt PNG"),
        ("truncated_50pct_jpg.jpg", "truncated or corrupt JPEG"),
        ("dangling_link.jpg", "no such file or directory"),
        ("fifo.jpg", "not a regular file"),
    ],
)
def test_error_messages_say_why(corpus: tuple[Path, dict[str, str]], name: str, message: str) -> None:
    root, expected = corpus
    if name not in expected:
        pytest.skip(f"{name} cannot be made on this platform")
    with pytest.raises(ImageError) as info:
        decode_image(root / name)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_file_cut_in_half_says_its_data_ends_early(fmt: str) -> None:
    """Pillow's "(6 bytes not processed)" counts its own buffer; it must not suggest a nearly whole file."""
    pixels = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels), fmt)
    with pytest.raises(ImageError) as info:
        decode_bytes(data[: len(data) // 2])
    assert str(info.value) == f"truncated or corrupt {fmt}: the image data ends early"


def test_png_roundtrip_is_exact(tiny_rgb_png: Path, tiny_rgb: np.ndarray) -> None:
    result = decode_image(tiny_rgb_png)
    _check_decoded(result)
    assert (result.format, result.mode, result.frames) == ("PNG", "RGB", 1)
    np.testing.assert_array_equal(result.pixels, tiny_rgb)


def test_decode_bytes_matches_decode_image(tiny_rgb_jpeg: Path) -> None:
    from_file = decode_image(tiny_rgb_jpeg)
    from_bytes = decode_bytes(tiny_rgb_jpeg.read_bytes())
    np.testing.assert_array_equal(from_file.pixels, from_bytes.pixels)
    assert from_bytes.format == "JPEG"
    with pytest.raises(ImageError, match="empty file"):
        decode_bytes(b"")


def test_content_not_extension_decides(tmp_path: Path, tiny_rgb: np.ndarray) -> None:
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(_encode(Image.fromarray(tiny_rgb), "PNG"))
    result = decode_image(path)
    assert result.format == "PNG"
    np.testing.assert_array_equal(result.pixels, tiny_rgb)


def test_signatureless_tga_needs_its_extension(tiny_rgb: np.ndarray) -> None:
    tga = _encode(Image.fromarray(tiny_rgb), "TGA")
    np.testing.assert_array_equal(decode_bytes(tga, name="x.TGA").pixels, tiny_rgb)
    with pytest.raises(ImageError, match="not an image"):
        decode_bytes(tga, name="x.jpg")


def test_postscript_is_never_handed_to_ghostscript() -> None:
    with pytest.raises(ImageError, match="not an image"):
        decode_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", name="x.eps")


def test_one_by_one_and_extreme_aspect() -> None:
    one = decode_bytes(_encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    assert one.pixels.tolist() == [[[10, 20, 30]]]
    wide = decode_bytes(_encode(Image.new("L", (100_000, 1), 7), "PNG"))
    assert wide.pixels.shape == (1, 100_000, 3) and (wide.pixels == 7).all()


def test_size_limit_is_checked_before_decoding() -> None:
    png = _encode(Image.new("RGB", (20, 10)), "PNG")
    assert decode_bytes(png, max_pixels=200).width == 20
    with pytest.raises(ImageError, match=r"image too large: 20x10 exceeds 0.000199 MP limit"):
        decode_bytes(png, max_pixels=199)
    bomb = handmade_png(30_000, 3_000, zlib.compress(bytes(64)))  # 90 MP declared, 100 bytes of data
    start = time.perf_counter()
    with pytest.raises(ImageError, match="image too large: 30000x3000"):
        decode_bytes(bomb, max_pixels=50_000_000)
    assert time.perf_counter() - start < 0.5


def test_escalated_bomb_warning_is_an_image_error() -> None:
    bomb = handmade_png(11_000, 9_500, zlib.compress(bytes(64)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="image too large: 104500000 pixels exceeds 100 MP limit"):
            decode_bytes(bomb)


def test_pillow_globals_are_untouched(corpus: tuple[Path, dict[str, str]]) -> None:
    root = corpus[0]
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    for name in ("bomb_60000x60000.png", "truncated_50pct_png.png", "valid_png.png"):
        with contextlib.suppress(ImageError):
            decode_image(root / name)
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert DEFAULT_MAX_PIXELS == 100_000_000


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_grey_is_scaled_not_clipped(mode: str) -> None:
    values = np.array([[0, 255, 256, 1000], [30000, 40000, 65280, 65535]], dtype=np.uint16)
    dtype = ">u2" if mode == "I;16B" else "<u2"  # not convert(): Pillow clips I;16 → I;16B at 255
    img = Image.frombytes(mode, (values.shape[1], values.shape[0]), values.astype(dtype).tobytes())
    result = decode_bytes(_encode(img, "TIFF"))
    assert result.mode == mode
    np.testing.assert_array_equal(result.pixels[..., 0], values >> 8)
    np.testing.assert_array_equal(result.pixels[..., 0], result.pixels[..., 2])


def test_32_bit_integers_are_read_as_16_bit_and_saturate() -> None:
    values = np.array([[0, -5, 256, 65535, 70000]], dtype=np.int32)
    result = decode_bytes(_encode(Image.fromarray(values), "TIFF"))
    assert result.mode == "I"
    assert result.pixels[0, :, 1].tolist() == [0, 0, 1, 255, 255]


def test_16_bit_colour_png_keeps_channel_order() -> None:
    rgb16 = np.random.default_rng(1).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV writes BGR
    assert ok
    result = decode_bytes(buf.tobytes())
    np.testing.assert_array_equal(result.pixels, (rgb16 >> 8).astype(np.uint8))


def test_float_tiff_spans_zero_to_one() -> None:
    values = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], dtype=np.float32)
    result = decode_bytes(_encode(Image.fromarray(values), "TIFF"))
    assert result.pixels[0, :, 0].tolist() == [0, 128, 255, 255, 0]


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red ink
    result = decode_bytes(_encode(cmyk, "JPEG", quality=100))
    assert result.mode == "CMYK"
    red, green, blue = result.pixels[4, 4].astype(int)
    assert red > 200 and green < 50 and blue < 50


def test_palette_transparency_is_composited_onto_white() -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    result = decode_bytes(_encode(img, "PNG", transparency=1))  # the only colour is fully transparent
    assert result.mode == "P" and result.has_alpha and result.transparent_fraction == 1.0
    assert (result.pixels == 255).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_so_hidden_colours_drop_out(mode: str, tiny_rgb: np.ndarray) -> None:
    """What is analysed is what is seen on white: alpha 0 → white, 255 → the colour, between → the blend."""
    img = Image.fromarray(tiny_rgb).convert(mode)
    alpha = np.zeros(tiny_rgb.shape[:2], np.uint8)
    alpha[:, 4:8], alpha[:, 8:] = 128, 255
    img.putalpha(Image.fromarray(alpha))
    result = decode_bytes(_encode(img, "PNG"))
    colour = np.asarray(img.convert("RGB")).astype(int)
    expected = (colour * alpha[..., None] + 255 * (255 - alpha[..., None].astype(int)) + 127) // 255
    np.testing.assert_array_equal(result.pixels, expected)
    assert result.has_alpha and result.transparent_fraction == 0.5  # 8 of 16 columns not fully opaque
    opaque = decode_bytes(_encode(Image.fromarray(tiny_rgb), "PNG"))
    assert not opaque.has_alpha and opaque.transparent_fraction == 0.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation: int, tiny_rgb: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    png = _encode(Image.fromarray(tiny_rgb), "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(png)).convert("RGB")))
    np.testing.assert_array_equal(decode_bytes(png).pixels, expected)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animation_gives_first_frame_and_counts_frames(fmt: str) -> None:
    frames = [Image.new("RGB", (8, 8), (60 * i, 255 - 60 * i, 90)) for i in range(3)]
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
    result = decode_bytes(data)
    assert result.frames == 3
    assert np.abs(result.pixels.astype(int) - [0, 255, 90]).max() <= 3


def test_grey_and_bilevel_become_three_equal_channels(tiny_rgb: np.ndarray) -> None:
    for mode in ("L", "1"):
        result = decode_bytes(_encode(Image.fromarray(tiny_rgb).convert(mode), "PNG"))
        assert result.mode == mode
        assert (result.pixels[..., 0] == result.pixels[..., 1]).all()


def test_paths_that_are_not_files(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"^no such file or directory$"):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="directory"):
        decode_image(tmp_path)


@pytest.mark.parametrize(
    "exc", [MemoryError(), struct.error("unpack"), SyntaxError("bad"), EOFError(), ValueError("x\ny")]
)
def test_any_pillow_exception_becomes_image_error(
    monkeypatch: pytest.MonkeyPatch, tiny_rgb_png: Path, exc: Exception
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(images.Image, "open", explode)
    with pytest.raises(ImageError) as info:
        decode_image(tiny_rgb_png)
    assert "\n" not in str(info.value)


def test_broken_exif_does_not_sink_good_pixels(monkeypatch: pytest.MonkeyPatch, tiny_rgb_png: Path) -> None:
    def broken(self: Image.Image) -> None:
        raise struct.error("corrupt EXIF")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    assert decode_image(tiny_rgb_png).width == 16


def test_image_extensions() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)
    assert is_image_name("A.JPG") and is_image_name("b.Tiff") and not is_image_name("notes.txt")
    assert not is_image_name("jpg")


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_without_end_marker_is_accepted_only_when_no_pixel_is_missing(progressive: bool) -> None:
    """Missing only the 2-byte EOI: the intact file's pixels, at every image size. Missing more: refused
    or, where the lost bytes held no pixel information, still the intact pixels; never anything else."""
    rng = np.random.default_rng(7)
    for size in range(24, 24 + 16 * 9, 9):  # 16 sizes, both even and odd, MCU-aligned or not
        noisy = np.clip(rng.normal(128, 40, (size, size + 5, 3)), 0, 255).astype(np.uint8)
        data = _encode(Image.fromarray(noisy), "JPEG", quality=90, progressive=progressive)
        intact = decode_bytes(data).pixels
        assert np.array_equal(decode_bytes(data[:-2]).pixels, intact), size
    for cut in range(3, 160):
        try:
            pixels = decode_bytes(data[:-cut]).pixels
        except ImageError as exc:
            assert "truncated or corrupt JPEG" in str(exc)
        else:
            assert np.array_equal(pixels, intact), cut


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(("name", "params"), [("a.png", {}), ("b.jpg", {"quality": 90}), ("c.webp", {})])
@pytest.mark.parametrize("step", [1, 3, 4])
def test_decode_windows_cuts_the_whole_decodes_pixels(tmp_path: Path, name: str, params: dict,
                                                      step: int) -> None:
    """Windows cut without converting the whole image hold exactly its pixels, and ``place`` sees exactly
    the whole image's 1-in-``step`` subsample (odd sizes: the last row and column count)."""
    path = tmp_path / name
    Image.fromarray(_photo(203, 150)).save(path, **params)
    whole = decode_image(path).pixels
    seen: list[np.ndarray] = []

    def place(height: int, width: int, sample: np.ndarray) -> list[tuple[int, int]]:
        seen.append(sample)
        assert (height, width) == whole.shape[:2]
        return [(0, 0), (203 - 64, 150 - 64), (70, 31)]

    got = decode_windows(path, Windows(size=64, step=step, place=place))
    assert isinstance(got, DecodedWindows)
    assert np.array_equal(seen[0], whole[::step, ::step])
    assert got.positions == [(0, 0), (139, 86), (70, 31)] and (got.width, got.height) == (150, 203)
    for (y, x), window in zip(got.positions, got.windows, strict=True):
        assert window.flags.c_contiguous and np.array_equal(window, whole[y:y + 64, x:x + 64])


def _rotated_jpeg(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photo(90, 120)).save(path, exif=exif.tobytes())


@pytest.mark.parametrize(("name", "make"), [
    ("alpha.png", lambda p: Image.fromarray(_photo(90, 120)).convert("RGBA").save(p)),
    ("grey.png", lambda p: Image.fromarray(_photo(90, 120)).convert("L").save(p)),
    ("rotated.jpg", _rotated_jpeg),
    ("small.png", lambda p: Image.fromarray(_photo(40, 120)).save(p)),
])
def test_decode_windows_gives_the_whole_image_where_windows_do_not_apply(tmp_path: Path, name: str,
                                                                          make) -> None:
    """Alpha, other modes, EXIF rotation and images smaller than a window need the whole-image path."""
    path = tmp_path / name
    make(path)
    got = decode_windows(path, Windows(size=64, step=4, place=lambda *a: [(0, 0)]))
    assert isinstance(got, DecodedImage)
    assert np.array_equal(got.pixels, decode_image(path).pixels)


def test_decode_windows_reports_errors_as_decode_image_does(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(_encode(Image.fromarray(_photo(90, 120)), "PNG")[:200])
    with pytest.raises(ImageError) as whole:
        decode_image(path)
    with pytest.raises(ImageError) as windows:
        decode_windows(path, Windows(size=64, step=4, place=lambda *a: [(0, 0)]))
    assert str(windows.value) == str(whole.value)
