"""The plain-language reading says what the table, the figure, the JSON and the detector do."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from apn_testing import save_tiny_checkpoint
from explain_helpers import LOGIT_GAIN, image_array, write_png
from rich.console import Console

from apncli.engine.detector import Detector
from apncli.explain import Explanation, explain_image, render_terminal
from apncli.explain.occlusion import WITHOUT_BAND
from apncli.explain.reading import plain_reading

README = Path(__file__).resolve().parents[2] / "README.md"
#: The reviewer's image: six near-equal weights, band 1 the lightest and the only one occlusion moves.
WEIGHTS = (0.522, 0.519, 0.522, 0.5222, 0.520, 0.5215)
DELTAS = (-0.022, -0.160, -0.020, -0.043, -0.007, 0.010)


def _with_bands(e: Explanation, weights: tuple[float, ...], deltas: tuple[float, ...],
                p_crop: float) -> Explanation:
    """``e`` with its bands replaced: the given weights and occlusion deltas, stripes of band 0."""
    total = sum(weights)
    bands = [replace(e.bands[0], index=k, weight=w, share=w / total, occlusion_delta=d)
             for k, (w, d) in enumerate(zip(weights, deltas, strict=True))]
    return replace(e, bands=bands, p_crop=p_crop, occlusion=np.array([p_crop - d for d in deltas]))


@pytest.fixture(scope="module")
def explanation(detector) -> Explanation:
    return explain_image(detector, image_array(48, 40), source="photo.png")


def _view(e: Explanation) -> str:
    console = Console(record=True, width=100, color_system=None)
    render_terminal(e, console)
    return console.export_text()


def _table_rows(view: str) -> dict[int, str]:
    """Band index → the first table line of its block."""
    return {int(m.group(1)): line for line in view.splitlines() if (m := re.match(r"│\s*(\d+)\s*│", line))}


def _words(text: str) -> str:
    return " ".join(text.split())


def test_every_band_the_reading_names_is_in_the_table(explanation: Explanation) -> None:
    e = _with_bands(explanation, WEIGHTS, DELTAS, p_crop=0.46)
    named = {int(k) for k in re.findall(r"[Bb]and (\d+)", " ".join(plain_reading(e)))}
    shown = _table_rows(_view(e))
    assert 1 in named and named <= set(shown)
    heavy = _with_bands(explanation, (*WEIGHTS[:-1], 2.0), DELTAS, p_crop=0.46)  # uneven: heaviest named
    named = {int(k) for k in re.findall(r"[Bb]and (\d+)", " ".join(plain_reading(heavy)))}
    assert named == {1, 5} and named <= set(_table_rows(_view(heavy)))


@pytest.mark.parametrize(("delta", "sentence"), [
    (-0.160, "Removing band 1 raises the crop's p(AI) by 0.160 (from 0.460 to 0.620, dp = -0.160): its "
             "content pushes the score toward real."),
    (0.160, "Removing band 1 lowers the crop's p(AI) by 0.160 (from 0.460 to 0.300, dp = +0.160): its "
            "content pushes the score toward AI-generated."),
])
def test_reading_table_and_json_share_one_sign(explanation: Explanation, delta: float,
                                               sentence: str) -> None:
    e = _with_bands(explanation, WEIGHTS, (*DELTAS[:1], delta, *DELTAS[2:]), p_crop=0.46)
    view = _view(e)
    assert sentence in _words(view)
    assert f"{delta:+.3f}" in _table_rows(view)[1]
    occlusion = e.to_dict()["occlusion"]
    assert occlusion["deltas"][1] == pytest.approx(delta) == e.to_dict()["bands"][1]["occlusion_delta"]
    assert occlusion["p_without"][1] == pytest.approx(0.46 - delta)


def test_table_note_and_readme_say_what_occlusion_removes(explanation: Explanation) -> None:
    """The band's amplitude stripes lose every Fourier coefficient (amplitude and phase); nothing else."""
    view = _words(_view(_with_bands(explanation, WEIGHTS, DELTAS, p_crop=0.46)))
    assert f"dp = p(crop) - p({_words(WITHOUT_BAND)})" in view and "amplitude bins" not in view
    section = README.read_text(encoding="utf-8").split("### `apn explain`")[1].split("\n### ")[0]
    for claim in ("Fourier coefficients zeroed inside the band's amplitude stripes",
                  "lose amplitude and phase alike", "phase stripes are left alone"):
        assert claim in _words(WITHOUT_BAND) and claim in _words(section)
    assert "frequencies are removed" not in section


def test_decision_rule_is_stated_as_the_detector_applies_it(run_apn, tmp_path: Path,
                                                            monkeypatch) -> None:
    """Threshold 0.669 inside the band 0.583-0.677: scores from 0.669 to 0.677 are inconclusive."""
    monkeypatch.setenv("COLUMNS", "250")
    weights = save_tiny_checkpoint(tmp_path / "calibrated.safetensors", threshold=0.669, band=(0.583, 0.677))
    result = run_apn("explain", write_png(tmp_path / "photo.png"), "--weights", weights, "--no-occlusion")
    assert ("This model reads it as real below 0.583, inconclusive from 0.583 to 0.677 (both included), "
            "ai-generated above 0.677.") in result.stdout
    assert "from 0.669" not in result.stdout
    assert "(inconclusive 0.583-0.677)" in result.stdout  # the summary line: the edges, not "threshold 0.67"
    assert "threshold 0.67" not in result.stdout
    detector = Detector.load(weights, device="cpu")
    assert [detector.verdict(p) for p in (0.5829, 0.583, 0.669, 0.672, 0.677, 0.6771)] == [
        "real", "inconclusive", "inconclusive", "inconclusive", "inconclusive", "ai-generated"]


def test_tiles_agree_only_when_each_would_get_the_same_verdict(run_apn, weights: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    """Tiles close in score but on both sides of the ai-generated edge do not agree."""
    monkeypatch.setenv("COLUMNS", "250")
    image = write_png(tmp_path / "large.png", height=300, width=400, seed=5)
    first = run_apn("explain", image, "--weights", weights, "--json", "--no-occlusion")
    scores = sorted(tile["p_ai"] for tile in json.loads(first.stdout)["tiles"])
    edge = (scores[-2] + scores[-1]) / 2  # only the top tile lies above it
    split = save_tiny_checkpoint(tmp_path / "split.safetensors", threshold=edge,
                                 band=(scores[0] - 0.05, edge), logit_gain=LOGIT_GAIN)
    result = run_apn("explain", image, "--weights", split, "--no-occlusion")
    reading = _words(result.stdout)
    assert "They agree" not in reading
    assert "They do not agree: tile by tile the verdicts would be 3 inconclusive, 1 ai-generated." in reading
    assert "They agree: each tile alone would read ai-generated." in _words(first.stderr)  # all above 0.5
