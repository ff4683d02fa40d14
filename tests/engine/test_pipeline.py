"""The scan's decode step: what it hands to scoring, and what it avoids doing to get there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from apn_testing import tiny_detector
from PIL import Image

from apncli.data import images
from apncli.engine import pipeline


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "photo.webp"])
def test_decode_step_converts_only_the_crops_of_an_rgb_photo(tmp_path: Path, monkeypatch, name: str) -> None:
    """An RGB photo is never converted whole (the copy costs 5-7 ms and 36 MB per 12 MP), yet its crops and
    signal are exactly those of the whole-image path, so the scores are too."""
    path = tmp_path / name
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (301, 433, 3), dtype=np.uint8)).save(path)
    detector = tiny_detector()
    expected, signal = detector.prepare(images.decode_image(path).pixels)

    def whole_conversion(*args: object) -> None:
        raise AssertionError("the whole image was converted")

    monkeypatch.setattr(images, "_to_rgb", whole_conversion)
    decoded = pipeline.decode_crops(detector, path)
    assert len(decoded.crops) == len(expected) == detector.max_tiles
    assert all(np.array_equal(a, b) for a, b in zip(decoded.crops, expected, strict=True))
    assert decoded.signal == signal and (decoded.width, decoded.height) == (433, 301)


@pytest.mark.parametrize(("crop", "expected"), [(32, 16), (128, 16), (224, 5), (448, 4)])
def test_cpu_passes_hold_a_pixel_budget_of_crops_unless_told(crop: int, expected: int) -> None:
    """On CPU a pass takes 16 crops of 128 px (apn-v2) but only 5 of 224 px, so activation memory stays
    bounded whatever the checkpoint's crop; ``--batch-size`` overrides it."""
    detector = tiny_detector()
    detector.info = dataclasses.replace(detector.info,
                                        preprocessing={**detector.info.preprocessing, "crop": crop})
    assert pipeline.default_batch(detector) == expected
    assert pipeline._Scan(detector, pipeline.ScanOptions()).batch == expected
    assert pipeline._Scan(detector, pipeline.ScanOptions(batch_size=3)).batch == 3
