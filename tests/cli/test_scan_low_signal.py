"""Images with nothing to analyse get ``inconclusive`` with a reason; invisible pixels cannot move a score."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image


def _records(stdout: str) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in map(json.loads, stdout.splitlines())}


def test_flat_tiny_and_padded_images_are_inconclusive_never_flagged(run_apn, tiny_weights: Path,
                                                                     tmp_path: Path) -> None:
    """With --threshold 0 every scored image would be flagged: low-signal ones must not be."""
    rng = np.random.default_rng(0)
    Image.new("RGB", (768, 512), (135, 206, 235)).save(tmp_path / "sky.png")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "pixel.png")
    Image.fromarray(rng.integers(0, 256, (1, 300, 3), dtype=np.uint8)).save(tmp_path / "strip.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "noise32.png")
    Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(tmp_path / "noise320.png")
    result = run_apn("scan", tmp_path, "--jsonl", "--weights", tiny_weights, "--threshold", "0",
                     "--no-provenance")
    records = _records(result.stdout)
    for name in ("sky.png", "pixel.png", "strip.png"):
        assert records[name]["verdict"] == "inconclusive" and records[name]["p_ai"] is not None, name
    assert records["sky.png"]["low_signal"].startswith("too little texture")
    assert records["sky.png"]["padded"] is False and records["sky.png"]["textured_fraction"] == 0.0
    for name in ("pixel.png", "strip.png"):
        assert records[name]["padded"] is True
        assert records[name]["low_signal"].startswith("image is smaller than the 32-px crop")
    assert records["pixel.png"]["analysed_fraction"] == 1.0
    # 4 of the strip's 10 grid windows (each 32 px, neighbours sharing 1-2 px), the most detailed first:
    # their union covers 124 of the 300 pixels.
    assert records["strip.png"]["analysed_fraction"] == round(124 / 300, 4)
    for name in ("noise32.png", "noise320.png"):  # full of texture, no padding: scored as before
        assert records[name]["verdict"] == "ai-generated" and records[name]["low_signal"] is None
    assert records["noise32.png"]["analysed_fraction"] == 1.0
    assert records["noise320.png"]["analysed_fraction"] == 4 * 32 * 32 / (320 * 320)  # 4 disjoint tiles
    table = run_apn("scan", tmp_path / "sky.png", "--weights", tiny_weights, "--no-provenance")
    assert "low signal" in table.stdout and "too little texture" in table.stdout
    assert table.code == 0  # nothing flagged


def test_a_drawn_screen_is_inconclusive_never_flagged(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    """A screenshot-like image of solid fills and thin text strokes (~15% textured pixels, like the drawn
    chat screens `apn-v2` flagged) is low-signal even with --threshold 0."""
    screen = np.full((320, 320, 3), 245, dtype=np.uint8)
    screen[:40] = (30, 90, 200)  # title bar
    for row in range(60, 320, 24):  # lines of "text": short dark strokes on the light background
        for col in range(12, 300, 9):
            screen[row:row + 10, col:col + 2] = 20
    Image.fromarray(screen).save(tmp_path / "screen.png")
    result = run_apn("scan", tmp_path / "screen.png", "--jsonl", "--weights", tiny_weights,
                     "--threshold", "0", "--no-provenance")
    record = _records(result.stdout)["screen.png"]
    assert 0.10 <= record["textured_fraction"] < 0.20
    assert record["verdict"] == "inconclusive" and record["low_signal"].startswith("too little texture")


def test_explain_gives_the_same_low_signal_verdict(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    Image.new("RGB", (96, 64), (255, 255, 255)).save(tmp_path / "white.png")
    result = run_apn("explain", tmp_path / "white.png", "--json", "--weights", tiny_weights)
    document = json.loads(result.stdout)
    assert document["verdict"] == "inconclusive" and document["low_signal"].startswith("too little texture")
    assert result.code == 0
    words = run_apn("explain", tmp_path / "white.png", "--weights", tiny_weights, "--no-occlusion").stdout
    words = " ".join(words.split())  # the reading wraps at the terminal width
    assert "How sure: no verdict at all: too little texture" in words and "the score is not used" in words
    assert "no score would" in words and "inside the band" not in words


def test_colours_under_transparent_pixels_cannot_change_the_score(run_apn, tiny_weights: Path,
                                                                  tmp_path: Path) -> None:
    """Two cut-outs identical when composited (only the hidden colours differ) get identical scores."""
    rng = np.random.default_rng(1)
    rgba = np.dstack([rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), np.full((64, 64), 255, np.uint8)])
    rgba[:, :24, 3] = 0  # a transparent margin
    other = rgba.copy()
    other[:, :24, :3] = rng.integers(0, 256, (64, 24, 3), dtype=np.uint8)  # different invisible colours
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(other, "RGBA").save(tmp_path / "b.png")
    scanned = run_apn("scan", tmp_path, "--jsonl", "--weights", tiny_weights, "--no-provenance")
    records = _records(scanned.stdout)
    assert records["a.png"]["p_ai"] == records["b.png"]["p_ai"]
    assert records["a.png"]["has_alpha"] is True and records["a.png"]["transparent_fraction"] == 0.375


def test_threshold_help_says_low_signal_images_stay_inconclusive(run_apn, monkeypatch) -> None:
    """--threshold drops the score band only; its help must not promise that nothing is inconclusive."""
    monkeypatch.setenv("COLUMNS", "200")
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", run_apn("scan", "--help").stdout).split())
    assert "no inconclusive score band, but low-signal images stay inconclusive" in text
    assert "(no inconclusive band)" not in text
