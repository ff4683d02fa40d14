"""``apn explain`` as a shell sees it: JSON on stdout, the view on stderr, safe --out, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from apn_testing import save_tiny_checkpoint
from explain_helpers import LOGIT_GAIN, write_png
from PIL import Image


def _one_line_error(result) -> None:
    assert result.code == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_json_on_stdout_view_on_stderr(run_apn, weights: Path, image: Path) -> None:
    result = run_apn("explain", image, "--json", "--weights", weights)
    record = json.loads(result.stdout)
    assert record["schema"] == "apn.explain/1" and record["path"] == str(image)
    assert record["model"]["name"] == "tiny-test" and len(record["model"]["sha256"]) == 64
    assert record["figure"] is None
    assert len(record["occlusion"]["deltas"]) == len(record["bands"]) == 3
    assert "amplitude bands" in result.stderr and record["verdict"].upper() in result.stderr
    assert result.code == (1 if record["verdict"] == "ai-generated" else 0)


def test_plain_run_prints_the_view_on_stdout(run_apn, weights: Path, image: Path) -> None:
    result = run_apn("explain", image, "--weights", weights, "--no-occlusion")
    assert "phase bands" in result.stdout and "In plain words" in result.stdout
    assert "All 3 bands by weight" in result.stdout or "band table left out: no band stands out" in \
        result.stdout
    assert "error" not in result.stderr
    assert result.code in (0, 1)


def test_out_writes_one_png_and_refuses_to_clobber(run_apn, weights: Path, image: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "heatmap.png"
    first = run_apn("explain", image, "--out", out, "--json", "--weights", weights)
    assert json.loads(first.stdout)["figure"] == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and "apn:panels" in im.text
    before = out.read_bytes()
    again = run_apn("explain", image, "--out", out, "--weights", weights)
    _one_line_error(again)
    assert "--force" in again.stderr and out.read_bytes() == before
    forced = run_apn("explain", image, "--out", out, "--force", "--weights", weights)
    assert forced.code in (0, 1) and f"figure written to {out}" in forced.stdout


def test_out_never_overwrites_the_input(run_apn, weights: Path, image: Path, tmp_path: Path) -> None:
    original = image.read_bytes()
    _one_line_error(run_apn("explain", image, "--out", image, "--force", "--weights", weights))
    link = tmp_path / "link.png"
    link.symlink_to(image)
    _one_line_error(run_apn("explain", image, "--out", link, "--force", "--weights", weights))
    assert image.read_bytes() == original


@pytest.mark.parametrize("name", ["figure.jpg", "figure"])
def test_out_must_be_a_png_name(run_apn, weights: Path, image: Path, tmp_path: Path, name: str) -> None:
    result = run_apn("explain", image, "--out", tmp_path / name, "--weights", weights)
    _one_line_error(result)
    assert ".png" in result.stderr and not (tmp_path / name).exists()


def _bad_inputs(root: Path) -> dict[str, Path]:
    good = Image.new("RGB", (40, 40), (10, 200, 30))
    good.save(root / "good.png")
    data = (root / "good.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (root / "notes.txt").write_text("not an image")
    (root / "empty.jpg").write_bytes(b"")
    (root / "folder.png").mkdir()
    return {name: root / name for name in
            ("truncated.png", "garbage.png", "notes.txt", "empty.jpg", "folder.png", "missing.png")}


def test_bad_inputs_are_one_line_errors_with_exit_2(run_apn, weights: Path, tmp_path: Path) -> None:
    for name, path in _bad_inputs(tmp_path).items():
        result = run_apn("explain", path, "--json", "--weights", weights)
        _one_line_error(result)
        assert name in result.stderr


def test_missing_weights_is_a_one_line_error(run_apn, image: Path, tmp_path: Path) -> None:
    _one_line_error(run_apn("explain", image, "--weights", tmp_path / "nope.safetensors"))


def test_inconclusive_is_explained_through_its_representative_tile(run_apn, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """Not the least AI-like tile: the one whose score is closest to the image's, named as such, with
    every tile's score and a plain reading of what the score means and what would change it."""
    monkeypatch.setenv("COLUMNS", "250")
    weights = save_tiny_checkpoint(tmp_path / "band.safetensors", threshold=0.5, band=(0.0, 1.0),
                                   logit_gain=LOGIT_GAIN)
    image = write_png(tmp_path / "large.png", height=300, width=400, seed=5)
    result = run_apn("explain", image, "--weights", weights, "--json", "--no-occlusion")
    record = json.loads(result.stdout)
    assert record["verdict"] == "inconclusive" and result.code == 0
    scores = [tile["p_ai"] for tile in record["tiles"]]
    closest = min(range(len(scores)), key=lambda i: abs(scores[i] - record["p_ai"]))
    assert record["crop"]["tile_index"] == closest
    view = result.stderr
    assert "the tile closest to the image's score" in view and "drove the verdict" not in view
    assert all(f"{i + 1}: {score:.3f}" in view for i, score in enumerate(scores))
    assert "How sure: not at all" in view
    assert "What would change it: a score below 0.000 would read real, above 1.000 ai-generated." in view


def test_real_verdict_reading_says_what_would_flip_it(run_apn, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    weights = save_tiny_checkpoint(tmp_path / "strict.safetensors", threshold=1.0, logit_gain=LOGIT_GAIN)
    image = write_png(tmp_path / "photo.png")
    result = run_apn("explain", image, "--weights", weights, "--no-occlusion")
    assert "REAL" in result.stdout and "the most real-looking tile" in result.stdout
    assert "What would change it: a score at or above 1.000 would read ai-generated." in result.stdout


def test_large_photo_is_judged_on_content_not_sky(run_apn, weights: Path, tmp_path: Path) -> None:
    """Every scored tile of a photo that is mostly flat sky lies in its detailed part."""
    rng = np.random.default_rng(0)
    photo = np.empty((300, 400, 3), dtype=np.uint8)
    photo[:] = np.linspace(150, 200, 300, dtype=np.uint8)[:, None, None]
    photo[200:] = rng.integers(0, 256, (100, 400, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "sky.png")
    result = run_apn("explain", tmp_path / "sky.png", "--weights", weights, "--json", "--no-occlusion")
    boxes = [tile["box"] for tile in json.loads(result.stdout)["tiles"]]
    assert len(boxes) == 4 and all(y >= 200 for _, y, _, _ in boxes)
