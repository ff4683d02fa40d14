"""A small panel-layout and plotting kit on Pillow + NumPy (no matplotlib: it is a heavy dependency for
four panels, and its output changes between versions).

Conventions: boxes are (x0, y0, x1, y1) in figure pixels, x1/y1 exclusive; images are H×W×3 uint8 RGB;
colour maps are (256, 3) uint8 lookup tables. Text uses Pillow's bundled default font, which only covers
Latin-1, so labels are written in ASCII (``sum``, ``dp``), never Σ or Δ.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

Box = tuple[int, int, int, int]
Color = tuple[int, int, int]

BACKGROUND: Color = (255, 255, 255)
INK: Color = (30, 30, 30)
MUTED: Color = (110, 110, 110)
FRAME: Color = (160, 160, 160)


@functools.lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at ``size`` px (Pillow ≥ 10.1); the fixed bitmap font on older Pillow."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


@functools.lru_cache(maxsize=8)
def colormap(name: str) -> np.ndarray:
    """(256, 3) RGB lookup table of an OpenCV colour map ("viridis", "inferno", "magma", ...)."""
    code = getattr(cv2, f"COLORMAP_{name.upper()}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    return cv2.applyColorMap(ramp, code)[:, 0, ::-1].copy()


def apply_colormap(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped) to RGB through an (N, 3) lookup table: (H, W) → (H, W, 3)."""
    top = len(lut) - 1
    index = np.clip(np.nan_to_num(values) * top + 0.5, 0, top).astype(np.intp)
    return lut[index]


def normalise(values: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.5) -> np.ndarray:
    """Percentile-stretch to [0, 1] so one extreme bin (the DC term) does not flatten the rest."""
    lo, hi = np.percentile(values, [low_pct, high_pct])
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float64)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour when enlarging (keeps bins crisp), area averaging when shrinking."""
    shrinking = width < image.shape[1] or height < image.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_NEAREST
    return cv2.resize(image, (width, height), interpolation=interpolation)


def to_gray_rgb(image: np.ndarray) -> np.ndarray:
    """RGB → grey RGB, so a colour overlay on top stays readable."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[..., None], 3, axis=2)


def blend(base: np.ndarray, overlay: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """base·(1-α) + overlay·α with a scalar or per-pixel α in [0, 1]."""
    a = np.asarray(alpha, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    mixed = base.astype(np.float32) * (1.0 - a) + overlay.astype(np.float32) * a
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Tick:
    """A tick at ``position`` (figure pixels along the axis) with its label."""

    position: float
    label: str


class Figure:
    """A white canvas with helpers to place text, images, axes and colour bars at pixel boxes."""

    def __init__(self, width: int, height: int) -> None:
        self.image = Image.new("RGB", (width, height), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)

    def text(self, xy: tuple[float, float], text: str, size: int = 13, fill: Color = INK,
             anchor: str = "la") -> None:
        self.draw.text(xy, text, font=font(size), fill=fill, anchor=anchor)

    def text_width(self, text: str, size: int) -> float:
        return self.draw.textlength(text, font=font(size))

    def fit_text(self, xy: tuple[float, float], text: str, max_width: float, size: int = 13,
                 fill: Color = INK) -> None:
        """Left-aligned text shrunk (down to 9 px) and then ellipsised so it never spills out of its box."""
        while size > 9 and self.text_width(text, size) > max_width:
            size -= 1
        while len(text) > 4 and self.text_width(text, size) > max_width:
            text = text[:-4] + "..."
        self.text(xy, text, size, fill)

    def paste(self, image: np.ndarray, xy: tuple[int, int]) -> Box:
        """Paste an RGB array with its top-left at ``xy``; returns the box it covers."""
        self.image.paste(Image.fromarray(image), xy)
        return (xy[0], xy[1], xy[0] + image.shape[1], xy[1] + image.shape[0])

    def rect(self, box: Box, outline: Color | None = FRAME, fill: Color | None = None,
             width: int = 1) -> None:
        """Rectangle covering exactly ``box`` (exclusive x1/y1, unlike ImageDraw's inclusive corners); a box
        under one pixel wide or high (a 65535x1 image's tile, scaled down) is drawn one pixel wide."""
        x0, y0, x1, y1 = box
        self.draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=outline, fill=fill,
                            width=width)

    def line(self, points: Sequence[tuple[float, float]], fill: Color = INK, width: int = 1) -> None:
        self.draw.line(list(points), fill=fill, width=width)

    def x_axis(self, box: Box, ticks: Sequence[Tick], label: str) -> None:
        """Tick marks and labels under ``box``, then the axis label centred below them."""
        x0, _, x1, y1 = box
        for tick in ticks:
            x = min(max(tick.position, x0), x1 - 1)
            self.line([(x, y1), (x, y1 + 4)], fill=INK)
            self.text((x, y1 + 6), tick.label, size=11, fill=INK, anchor="ma")
        self.text(((x0 + x1) / 2, y1 + 21), label, size=12, fill=INK, anchor="ma")

    def y_axis(self, box: Box, ticks: Sequence[Tick], label: str) -> None:
        """Tick marks and labels left of ``box``, and the axis label written vertically further left."""
        x0, y0, _, y1 = box
        widest = 0.0
        for tick in ticks:
            y = min(max(tick.position, y0), y1 - 1)
            self.line([(x0 - 4, y), (x0 - 1, y)], fill=INK)
            self.text((x0 - 6, y), tick.label, size=11, fill=INK, anchor="rm")
            widest = max(widest, self.text_width(tick.label, 11))
        self._vertical_text((x0 - 10 - widest - 14, (y0 + y1) / 2), label, size=12)

    def _vertical_text(self, centre: tuple[float, float], text: str, size: int) -> None:
        width = int(self.text_width(text, size)) + 4
        strip = Image.new("RGB", (width, size + 6), BACKGROUND)
        ImageDraw.Draw(strip).text((2, 1), text, font=font(size), fill=INK)
        rotated = strip.rotate(90, expand=True)
        self.image.paste(rotated, (int(centre[0] - rotated.width / 2), int(centre[1] - rotated.height / 2)))

    def colorbar(self, box: Box, lut: np.ndarray, ticks: Sequence[tuple[float, str]], label: str) -> None:
        """Vertical colour bar (high values at the top) with ticks at fractions in [0, 1] and a label."""
        x0, y0, x1, y1 = box
        ramp = np.linspace(1.0, 0.0, y1 - y0)[:, None].repeat(x1 - x0, axis=1)
        self.paste(apply_colormap(ramp, lut), (x0, y0))
        self.rect(box, outline=INK)
        for fraction, text in ticks:
            y = y1 - 1 - fraction * (y1 - y0 - 1)
            self.line([(x1, y), (x1 + 3, y)], fill=INK)
            self.text((x1 + 5, y), text, size=11, fill=INK, anchor="lm")
        strip_x = x1 + 5 + max(self.text_width(t, 11) for _, t in ticks) + 12
        self._vertical_text((strip_x, (y0 + y1) / 2), label, size=11)

    def swatch(self, xy: tuple[int, int], color: Color, text: str, size: int = 11) -> int:
        """A small filled square and its legend text; returns the x just after the text."""
        x, y = xy
        self.rect((x, y, x + 11, y + 11), outline=INK, fill=color)
        self.text((x + 16, y + 6), text, size=size, fill=INK, anchor="lm")
        return int(x + 16 + self.text_width(text, size) + 14)


def grid(origin: tuple[int, int], cell: tuple[int, int], columns: int, rows: int) -> list[Box]:
    """Row-major boxes of a columns×rows grid of equal cells starting at ``origin``."""
    ox, oy = origin
    w, h = cell
    return [(ox + c * w, oy + r * h, ox + (c + 1) * w, oy + (r + 1) * h) for r in range(rows)
            for c in range(columns)]


__all__ = [
    "Box",
    "Figure",
    "Tick",
    "apply_colormap",
    "blend",
    "colormap",
    "font",
    "grid",
    "normalise",
    "resize_to",
    "to_gray_rgb",
]
