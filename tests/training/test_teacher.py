"""The semantic teacher (reference §4.1): CLIP in place of BLIP, cached features, and why it is needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from synthdata import TINY_TRAIN_FLAGS, make_folder_dataset
from typer.testing import CliRunner

from apncli.cli.app import app
from apncli.engine.checkpoint import read_metadata
from apncli.model import build_model
from apncli.training.losses import LossWeights, detector_loss
from apncli.training.teacher import project_features, write_teacher_features


class CountingTower:
    """A stand-in image tower: mean colour of each image, and how many images it was asked to embed."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, images):
        self.calls += len(images)
        return np.stack([img.reshape(-1, 3).mean(0) / 255 for img in images]).astype(np.float32)


def test_features_are_computed_once_and_reused(tmp_path: Path) -> None:
    data = make_folder_dataset(tmp_path / "data", n=3)
    paths = sorted(data.rglob("*.png"))
    broken = data / "real" / "broken.png"
    broken.write_bytes(b"not a png")
    tower, out, logged = CountingTower(), tmp_path / "teacher.safetensors", []
    write_teacher_features(tower, [*paths, broken, paths[0]], out, "counting", logged.append)
    assert tower.calls == 6  # each readable image once, duplicates and the broken file not
    with safe_open(str(out), framework="pt") as f:
        assert f.get_tensor("features").shape == (6, 3)
        assert json.loads(f.metadata()["paths"]) == sorted(str(p) for p in paths)
    assert any("skipped" in line and "broken.png" in line for line in logged)
    write_teacher_features(tower, [*paths, broken], out, "counting", logged.append)
    assert tower.calls == 6 and "reusing" in logged[-1]
    write_teacher_features(tower, paths[:2], out, "counting")  # a subset (another split): reused
    assert tower.calls == 6
    extra = data / "real" / "extra.png"
    extra.write_bytes(paths[0].read_bytes())
    write_teacher_features(tower, [*paths, extra], out, "counting")  # an image it lacks: computed again
    assert tower.calls == 6 + 7


def test_projection_keeps_inner_products_and_is_fixed() -> None:
    feats = torch.nn.functional.normalize(torch.randn(5, 12), dim=1)
    wide = project_features(feats, 20)  # embedding into more dims: inner products kept exactly
    assert torch.allclose(wide @ wide.T, feats @ feats.T, atol=1e-5)
    assert torch.equal(project_features(feats, 12), feats)
    narrow = project_features(feats, 8)
    assert narrow.shape == (5, 8) and torch.equal(narrow, project_features(feats, 8))


@pytest.mark.slow
def test_without_a_teacher_the_irrelevant_features_stay_collapsed() -> None:
    """With only L_se1 the artifact-irrelevant features of different images stay nearly one constant vector
    (they carry no content); a teacher spreads them out to follow it. Why `apn train` warns without one."""
    torch.manual_seed(0)
    x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 2, (32,))
    teacher = torch.nn.functional.normalize(torch.randn(32, 16), dim=1) * 3

    def relative_spread(use_teacher: bool) -> float:
        torch.manual_seed(1)
        model = build_model("tiny")
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        weights = LossWeights.parse("band=0,pull=0,mi=0,gen=0")
        bases = (model.spatial_bases.semantic_base, model.spatial_bases.generative_base)
        for _ in range(150):
            idx = torch.randint(0, 32, (8,))
            target = (teacher[idx], torch.ones(8, dtype=torch.bool)) if use_teacher else (None, None)
            loss, _ = detector_loss(model(x[idx]), y[idx], weights, bases, None, *target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            f_irr = model.eval()(x).f_irr
        return float(f_irr.std(0).mean() / f_irr.norm(dim=1).mean())

    alone, taught = relative_spread(False), relative_spread(True)
    assert alone < 0.1 < 0.15 < taught


def _train(tmp_path: Path, *extra: str):
    data = make_folder_dataset(tmp_path / "data", n=6)
    out = tmp_path / "run"
    args = ["train", "--dataset", "folder", "--data-root", str(data), "--out", str(out), *TINY_TRAIN_FLAGS,
            "--epochs", "1", "--max-steps", "1", "--club-data", "reuse", "--val-fraction", "0.34", *extra]
    return CliRunner().invoke(app, args), out


def test_training_without_a_teacher_says_purification_is_degenerate(tmp_path: Path) -> None:
    result, out = _train(tmp_path)
    assert result.exit_code == 0, result.output
    assert "implicit purification is degenerate" in (out / "train.log").read_text()
    assert read_metadata(out / "model.safetensors")["training"]["semantic_teacher"] is None


@pytest.mark.slow
def test_clip_teacher_embeds_the_training_images_once(tmp_path: Path) -> None:
    """The real CLIP ViT-B/16 ONNX tower (test extra): one 512-d row per training image, projected to the
    model's width; the checkpoint says what replaced BLIP."""
    result, out = _train(tmp_path, "--teacher", "clip_b16")
    assert result.exit_code == 0, result.output
    with safe_open(str(out / "teacher-clip_b16.apn-teacher"), framework="pt") as f:
        features = f.get_tensor("features")
        n_train = len(json.loads(f.metadata()["paths"]))
    assert features.shape == (n_train, 512) and n_train >= 6
    assert [p.name for p in out.glob("*.safetensors")] == ["model.safetensors"]  # the only loadable file
    assert torch.allclose(features.norm(dim=1), torch.ones(n_train), atol=1e-4)
    log = (out / "train.log").read_text()
    assert "degenerate" not in log and f"covers {n_train}/{n_train}" in log
    teacher = read_metadata(out / "model.safetensors")["training"]["semantic_teacher"]
    assert teacher["name"] == "clip_b16" and "CLIP ViT-B/16" in teacher["model"] and "BLIP" in teacher["note"]
    step = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert step["se2"] > 0 and step["se3"] > 0
