"""The scan's decode step: what it hands to scoring, and what it avoids doing to get there."""

from __future__ import annotations

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
