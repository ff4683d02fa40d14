"""Phone and modern formats: HEIC/HEIF/AVIF are scanned; other image formats get a record saying why not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from apncli.data.images import decode_image


def _smooth(height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)


def test_heic_heif_avif_decode_to_the_picture(tmp_path: Path) -> None:
    """Lossy formats: close to the encoded picture, upright after an EXIF rotation, like a JPEG."""
    picture = _smooth()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    for fmt in ("HEIF", "AVIF"):
        path = tmp_path / f"photo.{fmt.lower()}"
        Image.fromarray(picture).save(path, format=fmt, quality=95, exif=exif.tobytes())
        decoded = decode_image(path)
        assert (decoded.format, decoded.width, decoded.height) == (fmt, 48, 64)
        assert np.abs(decoded.pixels.astype(int) - np.rot90(picture, -1)).mean() < 4


def test_folder_scan_includes_phone_formats_and_names_unsupported_ones(run_apn, tiny_weights: Path,
                                                                       tmp_path: Path) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    Image.fromarray(_smooth()).save(folder / "IMG_0001.HEIC", format="HEIF", quality=90)
    Image.fromarray(_smooth()).save(folder / "b.heif", format="HEIF", quality=90)
    Image.fromarray(_smooth()).save(folder / "c.avif", format="AVIF", quality=90)
    (folder / "d.jxl").write_bytes(b"\xff\x0a" + bytes(200))  # a JPEG XL codestream header
    result = run_apn("scan", folder, "--jsonl", "--weights", tiny_weights, "--no-provenance")
    records = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert sorted(records) == ["IMG_0001.HEIC", "b.heif", "c.avif", "d.jxl"]
    for name in ("IMG_0001.HEIC", "b.heif", "c.avif"):
        record = records[name]
        assert record["error"] is None and (record["width"], record["height"]) == (64, 48)
    assert records["d.jxl"]["error"].startswith("unsupported image format: JPEG XL (.jxl)")
    flagged = any(r["verdict"] == "ai-generated" for r in records.values())
    assert result.code == (1 if flagged else 3)  # ran, one input unreadable
