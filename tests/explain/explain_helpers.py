"""Helpers for explain tests: images with some structure in their spectrum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

LOGIT_GAIN = 10.0  # a random tiny APN scores everything ~0.5; sharpen it so occlusion deltas are visible


def image_array(height: int = 48, width: int = 40, seed: int = 0) -> np.ndarray:
    """Noise plus a stripe pattern: some structure in the spectrum, not just flat noise."""
    rng = np.random.default_rng(seed)
    xx = np.mgrid[0:height, 0:width][1]
    pattern = 100 + 60 * np.sin(xx / 2.5)[..., None] + rng.normal(0, 30, (height, width, 3))
    return np.clip(pattern, 0, 255).astype(np.uint8)


def write_png(path: Path, height: int = 48, width: int = 40, seed: int = 0) -> Path:
    Image.fromarray(image_array(height, width, seed)).save(path)
    return path
