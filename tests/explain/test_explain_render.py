"""The figure and the terminal view: readable panels in the right places, from the same numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from explain_helpers import image_array
from PIL import Image
from rich.console import Console

from apncli.explain import PANELS, explain_image, figure_name_for, render_figure, render_terminal
from apncli.explain.reading import bands_stand_out


@pytest.fixture(scope="module")
def explanation(detector):
    return explain_image(detector, image_array(48, 40), source="/data/photo.png")


def test_figure_is_a_png_with_six_non_uniform_panels(explanation, tmp_path: Path) -> None:
    info = render_figure(explanation, tmp_path / "fig.png")
    with Image.open(info.path) as im:
        assert im.format == "PNG" and im.size == info.size
        assert im.size[0] >= 1000 and im.size[1] >= 800
        stored = json.loads(im.text["apn:panels"])
        pixels = np.asarray(im.convert("RGB"))
    assert list(info.panels) == list(PANELS) and {k: tuple(v) for k, v in stored.items()} == info.panels
    for name, (x0, y0, x1, y1) in info.panels.items():
        assert 0 <= x0 < x1 <= info.size[0] and 0 <= y0 < y1 <= info.size[1], name
        region = pixels[y0:y1, x0:x1].astype(float)
        assert region.std() > 5, f"panel {name} looks blank"
    boxes = list(info.panels.values())
    for i, a in enumerate(boxes):  # panels never overlap
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    assert not list(tmp_path.glob(".*tmp")), "no temp file left behind"


def test_band_panel_shows_the_band_map(explanation, tmp_path: Path) -> None:
    """Bins no band covers show the grey spectrum; covered bins are coloured."""
    info = render_figure(explanation, tmp_path / "fig.png")
    pixels = np.asarray(Image.open(info.path).convert("RGB")).astype(int)
    x0, y0, x1, y1 = info.panels["amplitude"]
    panel = pixels[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
    chroma = panel.max(-1) - panel.min(-1)
    covered = explanation.centred_band_map("amplitude") > 0
    assert (chroma > 40).any() and (chroma < 3).any()
    assert 0.0 < covered.mean() < 1.0


def test_figure_without_occlusion_still_renders(detector, tmp_path: Path) -> None:
    plain = explain_image(detector, image_array(32, 32), occlusion=False)
    info = render_figure(plain, tmp_path / "sub" / "fig.png")
    assert info.path.is_file()


def test_figure_name_is_safe_and_unique() -> None:
    names = {figure_name_for(p) for p in ("a/x.png", "b/x.png", "a/x.jpg", "a/x y.png", "a/../x.png")}
    assert len(names) == 5
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-]+-[0-9a-f]{10}\.png", name), name
    assert figure_name_for("a/x.png") == figure_name_for("a/x.png")
    odd = figure_name_for(b"/tmp/\xff\xfe evil/..\\..name.jpg".decode("utf-8", "surrogateescape"))
    assert "/" not in odd and "\\" not in odd and odd.endswith(".png") and not odd.startswith(".")
    assert figure_name_for("/").endswith(".png")


@pytest.mark.parametrize("color_system", [None, "truecolor"])
def test_terminal_view_has_verdict_maps_and_bands(explanation, color_system) -> None:
    console = Console(record=True, width=80, color_system=color_system,
                      force_terminal=color_system is not None)
    render_terminal(explanation, console)
    text = console.export_text()
    assert explanation.verdict.upper() in text
    assert f"{explanation.p_ai:.3f}" in text
    assert "amplitude bands" in text and "phase bands" in text and "f_x (cycles/pixel)" in text
    assert ("All 3 bands by weight" in text) == bands_stand_out(explanation)
    assert "In plain words" in text and "What would change it" in text
    assert "x=" in text and "tile" in text
    map_lines = [line for line in text.splitlines() if line.startswith("  f_y")]
    assert len(map_lines) == 1
    assert max(len(line) for line in text.splitlines()) <= 80
