"""The one-PNG explanation figure: verdict header and six panels a reader can take in at a glance.

Layout (2 rows × 3 panels under a header)::

    header: file, verdict + p(AI), model, which crop was analysed
    [input image + tiles] [analysed crop]              [artifact-related image |x_art|]
    [amplitude band map]  [phase band map]             [proposal weights vs occlusion dp]
    footer: the plain-language reading (what the score means, how sure, what would change it, tiles,
            bands), then one line on how the maps are made

Each panel's plot area is returned (and stored in the PNG's ``apn:panels`` text chunk) so tests and tools
can find the panels without guessing pixel positions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import PngImagePlugin

from apncli import __version__
from apncli.explain import drawing as dr
from apncli.explain.explanation import SCHEMA, Explanation
from apncli.explain.occlusion import WITHOUT_BAND
from apncli.explain.reading import plain_reading, tile_role
from apncli.files import give_default_mode

PLOT = 288  # side of every panel's plot area, in pixels
CELL = (430, 410)  # one panel: title, plot, axes, colour bar
MARGIN = 20
HEADER = 112
MAPS_NOTE = ("How the maps are made: log(1+|X|) spectra of the crop, centred, in cycles/pixel; band maps "
             "sum_k w_k*mask_k / sum_k w_k from the network's own masks and weights; occlusion of a band: "
             f"dp = p(crop) - p({WITHOUT_BAND}). Details: docs/explain-schema.md.")
FOOTER_LINE = 19  # one footer line, in pixels
FOOTER_CHARS = 170  # reading sentences wrap at this many characters
PLOT_OFFSET = (66, 58)  # plot area's top-left inside its cell: room for y-axis labels and titles
FREQ_TICKS = (-0.5, -0.25, 0.0, 0.25, 0.5)
SPECTRUM_GRAY = 150  # the spectrum's brightest grey: context only, kept dim so band colours stand out
BAND_COLORMAP = "plasma"
BAND_FLOOR = 0.18  # smallest non-zero share starts here on the colour map, clear of the near-black end
BAND_ALPHA = 0.85  # overlay opacity = a + b·share, so weakly covered bins let the spectrum show
ALPHA_ARTIFACT = 0.65
PANELS = ("overview", "crop", "artifact", "amplitude", "phase", "weights")

VERDICT_COLORS: dict[str, dr.Color] = {
    "ai-generated": (200, 40, 40), "real": (30, 140, 60), "inconclusive": (205, 140, 0)}
CHOSEN: dr.Color = (255, 214, 0)
OTHER_TILE: dr.Color = (235, 235, 235)
WEIGHT_BAR: dr.Color = (86, 113, 190)
TOWARDS_AI: dr.Color = (214, 96, 77)
TOWARDS_REAL: dr.Color = (90, 160, 90)


@dataclass(frozen=True)
class FigureInfo:
    """Where the figure went, its size, and each panel's plot area (x0, y0, x1, y1)."""

    path: Path
    size: tuple[int, int]
    panels: dict[str, dr.Box]


def figure_name_for(path: str | os.PathLike[str]) -> str:
    """A safe, unique PNG file name for an input path, e.g. ``holiday_01_jpg-3f2a9c1b7e.png``.

    Readable part: the file name with anything but ``[A-Za-z0-9_-]`` replaced (so no separators, dots,
    spaces or undecodable bytes); unique part: a hash of the absolute path, so ``a/x.png`` and ``b/x.png``
    (or ``x.png`` and ``x.jpg``) never collide in one output folder.
    """
    raw = os.fsencode(os.path.abspath(os.fspath(path)))
    digest = hashlib.sha256(raw).hexdigest()[:10]
    name = os.fsdecode(os.path.basename(raw)).encode("ascii", "replace").decode("ascii")
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")[:60] or "image"
    return f"{readable}-{digest}.png"


def render_figure(explanation: Explanation, path: str | os.PathLike[str]) -> FigureInfo:
    """Draw the figure and write it as a PNG at ``path`` (atomically; overwrites: callers decide that)."""
    width = 2 * MARGIN + 3 * CELL[0]
    footer = _footer_lines(explanation)
    height = HEADER + 2 * CELL[1] + FOOTER_LINE * len(footer) + 12
    fig = dr.Figure(width, height)
    _header(fig, explanation, width)
    cells = dr.grid((MARGIN, HEADER), CELL, columns=3, rows=2)
    painters: dict[str, Callable[[dr.Figure, dr.Box, Explanation], None]] = {
        "overview": _overview, "crop": _crop, "artifact": _artifact,
        "amplitude": _band_panel("amplitude"), "phase": _band_panel("phase"), "weights": _weights,
    }
    panels = {}
    for name, cell in zip(PANELS, cells, strict=True):
        plot = _plot_box(cell)
        painters[name](fig, plot, explanation)
        panels[name] = plot
    _footer(fig, HEADER + 2 * CELL[1], footer)
    out = Path(path)
    _save_png(fig, out, panels)
    return FigureInfo(out, (width, height), panels)


def _plot_box(cell: dr.Box) -> dr.Box:
    x, y = cell[0] + PLOT_OFFSET[0], cell[1] + PLOT_OFFSET[1]
    return (x, y, x + PLOT, y + PLOT)


def _titles(fig: dr.Figure, plot: dr.Box, title: str, subtitle: str) -> None:
    x = plot[0] - PLOT_OFFSET[0] + 8
    room = CELL[0] - 16
    fig.fit_text((x, plot[1] - 50), title, room, size=17)
    fig.fit_text((x, plot[1] - 26), subtitle, room, size=12, fill=dr.MUTED)


# ------------------------------------------------------------------------------------------- header/footer
def _header(fig: dr.Figure, e: Explanation, width: int) -> None:
    name = os.path.basename(e.source) if e.source else "(image in memory)"
    fig.fit_text((MARGIN, 12), f"apn explain: {name}", width - 2 * MARGIN, size=22)
    color = VERDICT_COLORS.get(e.verdict, dr.INK)
    verdict = e.verdict.upper()
    fig.text((MARGIN, 44), verdict, size=24, fill=color)
    rule = e.decision_rule()
    fig.text((MARGIN + fig.text_width(verdict, 24) + 18, 48), f"p(AI) = {e.p_ai:.3f}   ({rule})", size=18)
    x, y, w, h = e.crop_box
    sha = (e.model.get("sha256") or "unknown")[:12]
    where = f"tile {e.tile_index + 1} of {len(e.tiles)}" + (", image wrap-padded" if e.padded else "")
    line = (f"model {e.model.get('name')} (config {e.model.get('config')}, sha256 {sha})   |   "
            f"image {e.image_size[0]}x{e.image_size[1]} px   |   analysed crop {w}x{h} at x={x}, y={y} "
            f"({where}), p(AI) of crop = {e.p_crop:.3f}")
    fig.fit_text((MARGIN, 82), line, width - 2 * MARGIN, size=13, fill=dr.MUTED)
    fig.line([(MARGIN, HEADER - 6), (width - MARGIN, HEADER - 6)], fill=dr.FRAME)


def _footer_lines(e: Explanation) -> list[tuple[str, bool]]:
    """(text, is_reading): the plain-language reading, then how the maps are made, both wrapped."""
    lines = [("In plain words", True)]
    for sentence in plain_reading(e):
        lines += [(part, True) for part in textwrap.wrap(sentence, FOOTER_CHARS, subsequent_indent="   ")]
    lines += [(part, False) for part in textwrap.wrap(MAPS_NOTE, FOOTER_CHARS)]
    return lines


def _footer(fig: dr.Figure, top: int, lines: list[tuple[str, bool]]) -> None:
    width = fig.image.width - 2 * MARGIN
    for i, (line, reading) in enumerate(lines):
        fig.fit_text((MARGIN, top + 4 + FOOTER_LINE * i), line, width, size=14 if reading else 12,
                     fill=dr.INK if reading else dr.MUTED)


# ------------------------------------------------------------------------------------------------ panels
def _overview(fig: dr.Figure, plot: dr.Box, e: Explanation) -> None:
    image = e.overview_rgb
    fit = PLOT / max(image.shape[:2])
    w, h = max(1, round(image.shape[1] * fit)), max(1, round(image.shape[0] * fit))
    x0, y0 = plot[0] + (PLOT - w) // 2, plot[1] + (PLOT - h) // 2
    fig.paste(dr.resize_to(image, w, h), (x0, y0))
    fig.rect((x0, y0, x0 + w, y0 + h), outline=dr.FRAME)
    scale = fit * e.overview_scale
    order = [i for i in range(len(e.tiles)) if i != e.tile_index] + [e.tile_index]  # analysed drawn last
    for i in order:
        bx, by, bw, bh = (round(v * scale) for v in e.tiles[i].box)
        box = (x0 + bx, y0 + by, x0 + bx + max(bw, 2), y0 + by + max(bh, 2))
        chosen = i == e.tile_index
        color = CHOSEN if chosen else OTHER_TILE
        fig.rect(box, outline=(0, 0, 0), width=4 if chosen else 3)  # dark rim: visible on any image
        fig.rect((box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1), outline=color, width=2 if chosen else 1)
        tag = str(i + 1)
        fig.rect((box[0] + 2, box[1] + 2, box[0] + int(fig.text_width(tag, 11)) + 8, box[1] + 17),
                 outline=None, fill=(20, 20, 20))
        fig.text((box[0] + 5, box[1] + 9), tag, size=11, fill=color, anchor="lm")
    scores = "  ".join(f"{i + 1}{'*' if i == e.tile_index else ''}: {tile.p_ai:.3f}"
                       for i, tile in enumerate(e.tiles))
    fig.fit_text((plot[0] - 40, plot[3] + 8), f"p(AI) per tile  {scores}", PLOT + 80, size=12)
    padded = "; wrap-padded to the crop size" if e.padded else ""
    _titles(fig, plot, "Input image and scored tiles",
            f"{len(e.tiles)} tile(s); yellow (*) = analysed crop{padded}")


def _pixel_ticks(plot: dr.Box, n: int) -> tuple[list[dr.Tick], list[dr.Tick]]:
    scale = PLOT / n
    marks = sorted({0, n // 2, n})
    xs = [dr.Tick(plot[0] + m * scale, str(m)) for m in marks]
    ys = [dr.Tick(plot[1] + m * scale, str(m)) for m in marks]
    return xs, ys


def _crop(fig: dr.Figure, plot: dr.Box, e: Explanation) -> None:
    fig.paste(dr.resize_to(e.crop_rgb, PLOT, PLOT), plot[:2])
    fig.rect(plot, outline=dr.INK)
    xs, ys = _pixel_ticks(plot, e.crop_size[1])
    fig.x_axis(plot, xs, "x (pixels in crop)")
    fig.y_axis(plot, ys, "y (pixels)")
    x, y, w, h = e.crop_box
    _titles(fig, plot, f"Analysed crop: {tile_role(e)}",
            f"{w}x{h} px at x={x}, y={y}; p(AI) = {e.p_crop:.3f}")


def _artifact(fig: dr.Figure, plot: dr.Box, e: Explanation) -> None:
    lut = dr.colormap("inferno")
    base = dr.to_gray_rgb(e.crop_rgb)
    heat = dr.apply_colormap(e.artifact_map, lut)
    fig.paste(dr.resize_to(dr.blend(base, heat, ALPHA_ARTIFACT), PLOT, PLOT), plot[:2])
    fig.rect(plot, outline=dr.INK)
    xs, ys = _pixel_ticks(plot, e.crop_size[1])
    fig.x_axis(plot, xs, "x (pixels in crop)")
    fig.y_axis(plot, ys, "y (pixels)")
    _colorbar(fig, plot, lut, "|x_art| (pixel scale 0-1), 1st-99.5th pct", *e.artifact_range)
    _titles(fig, plot, "Artifact-related image |x_art|",
            "sum_k w_k*x_k^art / sum_k w_k, mean over B,G,R, over the crop")


def _colorbar(fig: dr.Figure, plot: dr.Box, lut: np.ndarray, label: str, low: float, high: float,
              bottom: str | None = None) -> None:
    """Colour bar right of ``plot`` for values low..high; ``bottom`` relabels its lowest colour."""
    box = (plot[2] + 14, plot[1], plot[2] + 28, plot[3])
    digits = 2 if high - low >= 0.04 else 3
    ticks = [(f, f"{low + f * (high - low):.{digits}f}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    if bottom is not None:
        ticks[0] = (0.0, bottom)
    fig.colorbar(box, lut, ticks, label)


def _frequency_ticks(origin: int, n: int) -> list[dr.Tick]:
    """Ticks at FREQ_TICKS cycles/pixel on a centred axis of n bins drawn over PLOT pixels."""
    scale = PLOT / n
    # Centred bin i holds f = (i - n//2)/n; f = 0.5 itself lies one bin past the end (= -0.5, wrapped).
    return [dr.Tick(origin + (f * n + n // 2 + 0.5) * scale, f"{f:g}") for f in FREQ_TICKS]


def _band_panel(component: str) -> Callable[[dr.Figure, dr.Box, Explanation], None]:
    def paint(fig: dr.Figure, plot: dr.Box, e: Explanation) -> None:
        lut = dr.colormap(BAND_COLORMAP)
        top = e.band_display_max()
        gray = (dr.normalise(e.centred_log_spectrum()) * SPECTRUM_GRAY).astype(np.uint8)
        base = np.repeat(gray[..., None], 3, axis=2)
        share = e.centred_band_map(component)
        colour = dr.apply_colormap(BAND_FLOOR + (1 - BAND_FLOOR) * share / top, lut)
        image = dr.blend(base, colour, np.where(share > 0, BAND_ALPHA, 0.0))
        fig.paste(dr.resize_to(image, PLOT, PLOT), plot[:2])
        fig.rect(plot, outline=dr.INK)
        height, width = e.crop_size
        fig.x_axis(plot, _frequency_ticks(plot[0], width), "f_x (cycles/pixel)")
        fig.y_axis(plot, _frequency_ticks(plot[1], height), "f_y (cycles/pixel)")
        _colorbar(fig, plot, lut[int(BAND_FLOOR * 255):], "weight share of bands covering the bin", 0.0, top,
                  bottom=">0")
        _titles(fig, plot, f"{component.capitalize()} bands over the spectrum",
                "colour: sum_k w_k*mask_k / sum_k w_k;  grey: log(1+|X|), no band")

    return paint


def _nice_ceiling(value: float) -> float:
    """Smallest of 1, 2, 5 × 10^n that is ≥ value (at least 0.01), for a symmetric dp axis."""
    value = max(value, 0.01)
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * 10**exponent >= value - 1e-12:
            return step * 10**exponent
    raise AssertionError("unreachable")


def _weights(fig: dr.Figure, plot: dr.Box, e: Explanation) -> None:
    x0, y0, x1, y1 = plot
    k = len(e.bands)
    half = (PLOT - 24) // 2
    left = (x0, y0, x0 + half, y1)
    right = (x1 - half + 24, y0, x1 + 24, y1)
    row = PLOT / k
    bar = max(2.0, min(row * 0.7, 22.0))
    fig.rect(left, outline=dr.FRAME)
    fig.rect(right, outline=dr.FRAME)
    label_every = max(1, math.ceil(14 / row))  # many bands: label every n-th so labels never overlap
    for band in e.bands:
        cy = y0 + (band.index + 0.5) * row
        if band.index % label_every == 0:
            fig.text((x0 - 6, cy), f"k={band.index}", size=11, anchor="rm")
        end = x0 + band.weight * half
        fig.rect((x0, round(cy - bar / 2), max(round(end), x0 + 1), round(cy + bar / 2)),
                 outline=None, fill=WEIGHT_BAR)
        if row >= 12:
            fig.text((min(end + 3, left[2] - 30), cy), f"{band.weight:.2f}", size=10, anchor="lm")
    fig.x_axis(left, [dr.Tick(x0 + f * half, f"{f:g}") for f in (0, 0.5, 1)], "weight w_k")
    _occlusion_bars(fig, right, e, row, bar)
    legend_y = y1 + 38
    x = fig.swatch((x0 - 40, legend_y), WEIGHT_BAR, "attention weight")
    x = fig.swatch((x, legend_y), TOWARDS_AI, "dp>0: band pushes to AI")
    fig.swatch((x, legend_y), TOWARDS_REAL, "dp<0: to real")
    _titles(fig, plot, "Proposal weights vs band occlusion",
            "w_k the network gave each band; dp_k = p(crop) - p(without band k)")


def _occlusion_bars(fig: dr.Figure, box: dr.Box, e: Explanation, row: float, bar: float) -> None:
    x0, y0, x1, y1 = box
    if e.occlusion is None:
        fig.text(((x0 + x1) / 2, (y0 + y1) / 2), "not computed", size=12, fill=dr.MUTED, anchor="mm")
        fig.x_axis(box, [], "dp (not computed)")
        return
    deltas = [b.occlusion_delta or 0.0 for b in e.bands]
    span = _nice_ceiling(max(abs(d) for d in deltas))
    mid = (x0 + x1) / 2
    halfw = (x1 - x0) / 2 - 1
    fig.line([(mid, y0), (mid, y1 - 1)], fill=dr.INK)
    for band, delta in zip(e.bands, deltas, strict=True):
        cy = y0 + (band.index + 0.5) * row
        end = mid + delta / span * halfw
        color = TOWARDS_AI if delta > 0 else TOWARDS_REAL
        lo, hi = sorted((mid, end))
        fig.rect((round(lo), round(cy - bar / 2), max(round(hi), round(lo) + 1), round(cy + bar / 2)),
                 outline=None, fill=color)
        if row >= 12:
            text_x = end + 3 if delta >= 0 else end - 3
            fig.text((text_x, cy), f"{delta:+.3f}", size=10, anchor="lm" if delta >= 0 else "rm")
    ticks = [dr.Tick(mid + f * halfw, f"{f * span:+g}" if f else "0") for f in (-1, 0, 1)]
    fig.x_axis(box, ticks, "dp (occlusion)")


# -------------------------------------------------------------------------------------------------- save
def _save_png(fig: dr.Figure, out: Path, panels: dict[str, dr.Box]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a PNG under the final name."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"apn {__version__}")
    info.add_text("apn:schema", SCHEMA)
    info.add_text("apn:panels", json.dumps({name: list(box) for name, box in panels.items()}))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.image.save(handle, format="PNG", pnginfo=info)
        give_default_mode(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["PANELS", "FigureInfo", "figure_name_for", "render_figure"]
