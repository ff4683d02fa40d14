"""The Rich terminal view of an explanation: verdict, two compact band heatmaps and the top bands.

It must read over SSH and in a log: maps are 24×24 cells drawn with half-block characters (two cells per
character, so cells come out square), and fall back to a character ramp when the console has no colour.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console, Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

from apncli.errors import printable
from apncli.explain import drawing, spectra
from apncli.explain.explanation import CHANNELS, MAP_CELLS, AxisRange, Band, Explanation
from apncli.explain.occlusion import WITHOUT_BAND
from apncli.explain.reading import SMALL_DELTA, bands_stand_out, notable_bands, plain_reading, tile_role

TOP_BANDS = 5
RAMP = " .:-=+*#%@"
VERDICT_STYLES = {"ai-generated": "bold red", "real": "bold green", "inconclusive": "bold yellow"}
LABEL_WIDTH = 6


def render_terminal(explanation: Explanation, console: Console) -> None:
    """Print the explanation to ``console`` (stdout normally, stderr when stdout carries JSON)."""
    e = explanation
    name = printable(e.source) if e.source else "(image in memory)"  # never markup, never raw ESC
    console.print(Text.assemble(("apn explain", "bold"), " ", name), soft_wrap=True)  # one copy-pastable line
    console.print(_summary(e))
    console.print()
    console.print(_reading(e))
    console.print()
    console.print(_maps(e, colour=console.color_system is not None))
    console.print()
    if bands_stand_out(e):
        console.print(_band_table(e))
    else:  # a table of near-equal weights and tiny occlusion effects would only look like evidence
        console.print(Text(f"  (band table left out: no band stands out; all {len(e.bands)} are in --json)",
                           style="dim"))


def _summary(e: Explanation) -> Group:
    style = VERDICT_STYLES.get(e.verdict, "bold")
    rule = e.decision_rule()
    x, y, w, h = e.crop_box
    sha = (e.model.get("sha256") or "unknown")[:12]
    padded = ", image wrap-padded" if e.padded else ""
    return Group(
        Text.from_markup(
            f"  verdict  [{style}]{e.verdict.upper()}[/]   p(AI) = [bold]{e.p_ai:.3f}[/]   ({rule})"),
        Text(printable(f"  model    {e.model.get('name')} (config {e.model.get('config')}, sha256 {sha})")),
        Text(f"  image    {e.image_size[0]}x{e.image_size[1]} px, scored as {len(e.tiles)} tile(s){padded}"),
        Text(f"  crop     {w}x{h} at x={x}, y={y} (tile {e.tile_index + 1}, {tile_role(e)}), "
             f"p(AI) of crop = {e.p_crop:.3f}"),
        *([Text("  tiles    " + "  ".join(f"{i + 1}: {t.p_ai:.3f}" for i, t in enumerate(e.tiles)))]
          if len(e.tiles) > 1 else []),
        *([Text(f"  inconclusive: {e.low_signal}")] if e.low_signal else []),
    )


def _reading(e: Explanation) -> Group:
    """The plain-language reading, one wrapped paragraph per sentence group."""
    return Group(Text("  In plain words", style="bold"),
                 *(Text(f"  - {line}", overflow="fold") for line in plain_reading(e)))


# --------------------------------------------------------------------------------------------------- maps
def _maps(e: Explanation, colour: bool) -> Group:
    """Amplitude and phase band maps side by side, with frequency axes and a colour legend."""
    top = e.band_display_max()
    blocks = [_map_block(f"{name} bands", spectra.cells(e.centred_band_map(name), MAP_CELLS) / top, colour)
              for name in ("amplitude", "phase")]
    lines = [Text("   ").join([left, right]) for left, right in zip(*blocks, strict=True)]
    caption = Text("  colour = weight share of proposals covering the bin, sum_k w_k*mask_k / sum_k w_k "
                   "(mean over B,G,R); centred spectrum, cycles/pixel", style="dim")
    return Group(*lines, _legend(colour, top), caption)


def _map_block(title: str, grid: np.ndarray, colour: bool) -> list[Text]:
    """Title, 12 text lines of 24 cells (two cell rows per line), and an f_x axis underneath.

    Cell i of the centred axis starts at f = i/n - 0.5, so f = 0 is cell n/2 and the last cell is 0.5.
    """
    rows, width = grid.shape
    pairs = rows // 2
    labels = {0: "-0.5", pairs // 4: "f_y", pairs // 2: "0", pairs - 1: "0.5"}
    lines = [Text(" " * LABEL_WIDTH + title.ljust(width), style="bold")]
    for pair in range(pairs):
        line = Text(labels.get(pair, "").rjust(LABEL_WIDTH - 1) + " ", style="dim", end="")
        top, bottom = grid[2 * pair], grid[2 * pair + 1]
        lines.append(Text.assemble(line, _half_blocks(top, bottom) if colour else _ramp(top, bottom)))
    axis = _place(width, {0: "-0.5", width // 2: "0", width - 3: "0.5"})
    lines.append(Text(" " * LABEL_WIDTH + axis, style="dim"))
    lines.append(Text(" " * LABEL_WIDTH + "f_x (cycles/pixel)".center(width), style="dim"))
    return lines


def _place(width: int, labels: dict[int, str]) -> str:
    """A line of ``width`` spaces with each label written from its column."""
    chars = [" "] * width
    for start, label in labels.items():
        chars[start:start + len(label)] = label
    return "".join(chars[:width])


def _rgb(value: float) -> str:
    r, g, b = drawing.colormap("viridis")[int(np.clip(value, 0.0, 1.0) * 255 + 0.5)]
    return f"rgb({r},{g},{b})"


def _half_blocks(top: np.ndarray, bottom: np.ndarray) -> Text:
    text = Text()
    for upper, lower in zip(top, bottom, strict=True):
        text.append("▀", Style.parse(f"{_rgb(upper)} on {_rgb(lower)}"))
    return text


def _ramp(top: np.ndarray, bottom: np.ndarray) -> Text:
    values = (top + bottom) / 2
    return Text("".join(RAMP[int(np.clip(v, 0.0, 1.0) * (len(RAMP) - 1) + 0.5)] for v in values))


def _legend(colour: bool, top: float) -> Text:
    steps = np.linspace(0.0, 1.0, 16)
    legend = Text("  scale  0 ")
    if colour:
        for value in steps:
            legend.append("█", Style.parse(_rgb(value)))
    else:
        legend.append("".join(RAMP[int(v * (len(RAMP) - 1) + 0.5)] for v in steps))
    return legend.append(f" {top:.2f}")


# ------------------------------------------------------------------------------------------------- table
def table_bands(e: Explanation) -> list[Band]:
    """The bands the table shows, heaviest first: the TOP_BANDS heaviest plus every notable band.

    Weights alone would hide the band the reading names for its occlusion effect whenever that band is
    light (weights are often near-equal, occlusion effects rarely are). Adding every band whose removal
    moves p(AI) by SMALL_DELTA or more keeps each band the reading names in the table (the heaviest one
    is always in the top by weight) while a model with many bands still gets a short table.
    """
    shown = {b.index for b in e.bands_by_weight()[:TOP_BANDS]} | {b.index for b in notable_bands(e)}
    return [b for b in e.bands_by_weight() if b.index in shown]


def _table_title(e: Explanation, shown: int) -> str:
    if shown == len(e.bands):
        which = f"All {shown} bands by weight"
    else:
        which = (f"{shown} of {len(e.bands)} bands by weight: the {TOP_BANDS} heaviest and any with "
                 f"|dp| >= {SMALL_DELTA}")
    return f"{which} (frequencies in cycles/pixel; all in --json)"


def _band_table(e: Explanation) -> Table:
    """One block per band (amplitude row, phase row), so it fits an 80-column terminal."""
    shown = table_bands(e)
    table = Table(title=_table_title(e, len(shown)), title_justify="left", header_style="bold")
    for header, justify in (("k", "right"), ("weight", "right"), ("dp", "right"), ("", "left"),
                            ("f_y (row stripe)", "left"), ("f_x (column stripe)", "left")):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for band in shown:
        delta = "-" if band.occlusion_delta is None else f"{band.occlusion_delta:+.3f}"
        for i, (name, component) in enumerate((("amp", band.amplitude), ("phase", band.phase))):
            lead = [str(band.index), f"{band.weight:.3f}", delta] if i == 0 else ["", "", ""]
            table.add_row(*lead, name, _channels([r.rows for r in component]),
                          _channels([r.columns for r in component]), end_section=i == 1)
    table.caption = f"one line per channel (B, G, R) where they differ; dp = p(crop) - p({WITHOUT_BAND})"
    return table


def _channels(axes: list[AxisRange]) -> str:
    """One line when every channel has the same stripe, else one line per channel."""
    texts = [_axis(axis) for axis in axes]
    if len(set(texts)) == 1:
        return texts[0]
    return "\n".join(f"{channel} {text}" for channel, text in zip(CHANNELS, texts, strict=True))


def _axis(axis: AxisRange) -> str:
    if not axis.valid:
        return "[yellow]invalid (DC)[/]"
    return " & ".join(f"{lo:.3f}" if lo == hi else f"{lo:.3f}..{hi:.3f}" for lo, hi in axis.cycles_per_pixel)


__all__ = ["render_terminal", "table_bands"]
