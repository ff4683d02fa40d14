"""How much analysable signal an image gives the detector, and when that is too little for a verdict.

A generator trace lives in fine, pixel-level texture. An image with almost none (a flat colour, a drawn
screen of solid fills and text) or an image so small that most of the crop is wrap-padded repetition of
itself gives the network nothing to judge, and its probability there means nothing: such images get
``inconclusive`` with a reason, never ``ai-generated``. The limits were calibrated with
``bench/low_signal.py`` on real photos and AI images (which must keep their verdicts) and on flat,
drawn-UI and tiny images (see README "Low-signal images").
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

TEXTURE_STEP = 3
"""A pixel is textured when some channel differs by at least this many levels from its right or lower
neighbour (sensor noise and any real-world surface do; flat fills and smooth gradients do not)."""

MIN_TEXTURED_FRACTION = 0.20
"""Below this share of textured pixels in the analysed crops an image is low-signal. 0.20 since apn-v2:
`bench/low_signal.py` measured drawn chat/settings screens at 15-17% (apn-v2 flagged 12 of 12 at 0.10),
real photos and photo crops at 25% or more, 2023-25 AI images at 48% or more, and 5% of the 2022 unseen
diffusion fakes under 23%."""

MAX_PADDED_FRACTION = 0.25
"""Above this share of wrap-padded pixels in a crop (image smaller than the crop) an image is low-signal."""


@dataclass(frozen=True)
class Signal:
    """What the detector actually gets to see of one image.

    ``analysed_fraction``: share of the image's pixels inside the analysed crops, in (0, 1].
    ``padded_fraction``: share of each crop's pixels that are wrap-padding (0 unless the image is smaller
    than the crop). ``textured_fraction``: share of the analysed pixels that carry texture (see
    :data:`TEXTURE_STEP`). ``low_signal``: why the image is too poor for a verdict, or None.
    """

    analysed_fraction: float
    padded_fraction: float
    textured_fraction: float
    low_signal: str | None

    def to_record(self) -> dict[str, Any]:
        """The scan-record fields (rounded for output)."""
        return {
            "analysed_fraction": round(self.analysed_fraction, 4),
            "padded": self.padded_fraction > 0,
            "textured_fraction": round(self.textured_fraction, 4),
            "low_signal": self.low_signal,
        }


def measure_signal(height: int, width: int, size: int, positions: Sequence[tuple[int, int]],
                   crops: Sequence[np.ndarray]) -> Signal:
    """Measure an ``height``×``width`` image analysed as ``size``-px ``crops`` at ``positions`` (top-left
    corners on the wrap-padded canvas, as ``data.crops.pad_to`` centres the image on it)."""
    padded = 1.0 - min(height, size) * min(width, size) / float(size * size)
    textured = float(np.mean([textured_fraction(crop) for crop in crops])) if crops else 0.0
    analysed = _covered_fraction(height, width, size, positions)
    reason = None
    if padded > MAX_PADDED_FRACTION:
        reason = (f"image is smaller than the {size}-px crop: {padded:.0%} of the analysed pixels are "
                  "wrap-padded repetition")
    elif textured < MIN_TEXTURED_FRACTION:
        reason = (f"too little texture to analyse: {textured:.0%} of the analysed pixels vary "
                  f"(limit {MIN_TEXTURED_FRACTION:.0%})")
    return Signal(analysed, max(padded, 0.0), textured, reason)


def textured_fraction(rgb: np.ndarray) -> float:
    """Share of the pixels of an H×W×3 uint8 image that differ by :data:`TEXTURE_STEP` or more from their
    right or lower neighbour in some channel (the last row/column compare with one neighbour only)."""
    pixels = rgb.astype(np.int16)
    step = np.zeros(rgb.shape[:2], dtype=bool)
    step[:, :-1] |= (np.abs(np.diff(pixels, axis=1)) >= TEXTURE_STEP).any(axis=2)
    step[:-1, :] |= (np.abs(np.diff(pixels, axis=0)) >= TEXTURE_STEP).any(axis=2)
    return float(step.mean())


def _covered_fraction(height: int, width: int, size: int, positions: Sequence[tuple[int, int]]) -> float:
    """Share of the image (placed as ``pad_to`` places it on the canvas) covered by the crop windows."""
    top, left = max(0, size - height) // 2, max(0, size - width) // 2
    ys = sorted({top, top + height, *(min(max(y, top), top + height) for p in positions
                                      for y in (p[0], p[0] + size))})
    xs = sorted({left, left + width, *(min(max(x, left), left + width) for p in positions
                                       for x in (p[1], p[1] + size))})
    covered = 0
    for y0, y1 in itertools.pairwise(ys):
        for x0, x1 in itertools.pairwise(xs):
            if any(y <= y0 and y1 <= y + size and x <= x0 and x1 <= x + size for y, x in positions):
                covered += (y1 - y0) * (x1 - x0)
    return covered / float(height * width)
