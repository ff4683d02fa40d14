"""The default-model recipe's plain-CNN baseline (``recipes/baseline.py``) and its report, on tiny data.

The recipe itself needs ``../shared/data``; its baseline must still train, calibrate and score through the
product's Detector exactly as ``apn scan`` would, or the recipe's APN-vs-CNN comparison breaks late in a
long run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from synthdata import make_folder_dataset, synth_image

from apncli.data.augment import AugmentConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))
from baseline import BaselineConfig, load_baseline, train_baseline


def test_baseline_trains_calibrates_and_scores_like_scan(tmp_path: Path) -> None:
    """Train, pick the best epoch, calibrate, reload from disk and score through the product's Detector."""
    data = make_folder_dataset(tmp_path / "data", n=16, size=64)
    out = tmp_path / "cnn"
    cfg = BaselineConfig(data_root=data, out=out, crop=64, epochs=2, batch_size=8, lr=1e-3, step_size=2,
                         val_fraction=0.5, workers=0, augment=AugmentConfig.off())
    train_baseline(cfg, log=lambda _: None)
    meta = json.loads((out / "baseline.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [1, 2] and meta["items"] == 16
    detector = load_baseline(out)
    assert detector.info.threshold == meta["threshold"]
    assert meta["calibration"]["achieved_fpr"] <= cfg.target_fpr
    lo, hi = detector.info.inconclusive_band
    assert lo <= detector.info.threshold <= hi
    assert [detector.verdict(p) for p in (lo - 1e-6, hi + 1e-6)] == ["real", "ai-generated"]
    big = synth_image(np.random.default_rng(5), 150, True)  # tiled and averaged, as apn scan does
    tiles = detector.crops_of(big)
    assert len(tiles) == 4
    assert detector.predict([big])[0] == pytest.approx(detector.predict_crops(tiles).mean(), abs=1e-9)


def test_efficientnet_baseline_starts_from_imagenet_and_reloads(tmp_path: Path) -> None:
    """The plain fine-tuned EfficientNet-Lite0 baseline loads the ImageNet trunk and reloads as trained."""
    import torch

    from apncli.engine.cache import resolve_weights
    from apncli.engine.checkpoint import load_torch_weights_only

    data = make_folder_dataset(tmp_path / "data", n=8, size=64)
    cfg = BaselineConfig(data_root=data, out=tmp_path / "eff", crop=64, arch="efficientnet_lite0", epochs=1,
                         batch_size=8, lr=0.0, val_fraction=0.5, workers=0, augment=AugmentConfig.off())
    lines: list[str] = []
    train_baseline(cfg, log=lines.append)
    assert any("initialised from its ImageNet weights" in line for line in lines)
    detector = load_baseline(cfg.out)
    stem = load_torch_weights_only(resolve_weights("efficientnet_lite0"))["_conv_stem.weight"]
    assert torch.equal(detector.model.trunk.trunk._conv_stem.weight.cpu(), stem)  # lr 0: still ImageNet's
    img = synth_image(np.random.default_rng(1), 64, False)
    assert 0.0 <= detector.predict([img])[0] <= 1.0


def test_recipe_reports_paired_differences_from_cached_scores(tmp_path: Path) -> None:
    """The recipe compares the shipped run with each baseline on the same images (its report's last step)."""
    import train_default as recipe

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    weak = rng.normal(size=80) + labels
    runs = {"apn-s0": weak + 0.5 * labels, "efficientnet-s0": weak}
    for variant, scores in runs.items():
        for set_name in recipe.EVAL_SETS:
            for cond in recipe.CONDITIONS:
                path = tmp_path / "scores" / f"{variant}--{set_name}--{cond}.json"
                path.parent.mkdir(exist_ok=True)
                rows = {"paths": [f"{set_name}/{i}.png" for i in range(80)][::-1],  # order must not matter
                        "labels": labels[::-1].tolist(), "scores": scores[::-1].tolist()}
                path.write_text(json.dumps(rows))
    result = recipe.compare(tmp_path, "apn-s0", "efficientnet-s0")
    assert set(result) == {f"{s}/{c}" for s in recipe.EVAL_SETS for c in recipe.CONDITIONS}
    first = result["unseen-diffusion/as-is"]
    assert first["n"] == 80 and 0 < first["ci95"][0] < first["delta_auc"] < first["ci95"][1]
    report = {"command": "python recipes/train_default.py --no-ship", "recipe": {},
              "shipped": {"run": "apn-s0"}, "evaluation": {}, "runs": {},
              "comparisons": {"efficientnet-s0": result}}
    text = recipe.markdown(report)
    assert "Not shipped (`--no-ship`), compared: `apn-s0`" in text
    assert f"| efficientnet-s0 | unseen-diffusion | as-is | {first['delta_auc']:+.3f} [" in text


def test_recipe_refuses_a_work_folder_from_other_settings(tmp_path: Path, monkeypatch) -> None:
    """Finished runs are reused by name, so a folder from other settings must be refused, not reused."""
    import train_default as recipe

    fresh = tmp_path / "fresh"
    assert recipe.claim_work_folder(fresh) is None and (fresh / "recipe.json").is_file()
    assert recipe.claim_work_folder(fresh) is None  # a rerun with the same settings resumes
    monkeypatch.setitem(recipe.RECIPE, "epochs", 99)
    assert "other recipe settings" in recipe.claim_work_folder(fresh)
    unstamped = tmp_path / "old"
    (unstamped / "apn-s0").mkdir(parents=True)  # runs from before the stamp existed
    assert "older recipe revision" in recipe.claim_work_folder(unstamped)


def test_recipe_reports_only_trained_runs_and_averages_seeds(tmp_path: Path, capsys) -> None:
    """`--report-only` reports what is trained (and says what is not); the ablation table averages each
    variant over its seeds and shows every seed's value."""
    import train_default as recipe

    (tmp_path / "apn-no-implicit-s0").mkdir()
    (tmp_path / "apn-no-implicit-s0" / "model.safetensors").touch()
    (tmp_path / "apn-no-implicit-s1").mkdir()
    (tmp_path / "apn-no-implicit-s1" / "model.safetensors").touch()
    (tmp_path / "efficientnet-s1").mkdir()
    (tmp_path / "efficientnet-s1" / "baseline.json").touch()
    runs = recipe.trained_runs(["apn-no-implicit", "efficientnet"], [0, 1], tmp_path)
    assert runs == ["apn-no-implicit-s0", "apn-no-implicit-s1", "efficientnet-s1"]
    assert "efficientnet-s0: not trained" in capsys.readouterr().out

    keys = [f"{s}/{c}" for s in recipe.EVAL_SETS for c in recipe.CONDITIONS]
    aucs = {"apn-no-implicit-s0": 0.9, "apn-no-implicit-s1": 0.8, "efficientnet-s1": 0.7, "apn-lite-v1": 0.6}
    report = {"evaluation": {run: {k: {"auc": auc} for k in keys} for run, auc in aucs.items()}}
    lines = recipe.ablation_lines(report)
    row = next(line for line in lines if line.startswith("| apn-no-implicit:"))
    assert "| 2 | 0.850 (0.900, 0.800) |" in row
    assert any(line.startswith("| efficientnet:") and "| 1 | 0.700 (0.700) |" in line for line in lines)
    assert not any("apn-lite-v1" in line for line in lines)  # not a variant of this recipe


def test_recipe_compares_ablations_seed_by_seed(tmp_path: Path) -> None:
    """Each ablation run is compared with the shipped variant's run of the *same* seed (paired), and a run
    without its seed-mate is left out rather than compared across seeds."""
    import train_default as recipe

    labels = np.repeat([0, 1], 30)
    noise = np.random.default_rng(1).normal(size=60)
    runs = {"apn-no-implicit-s1": noise + 2 * labels, "apn-no-band-proposal-s1": noise + labels,
            "apn-no-band-proposal-s0": noise}
    for run, scores in runs.items():
        for set_name in recipe.EVAL_SETS:
            for cond in recipe.CONDITIONS:
                path = tmp_path / "scores" / f"{run}--{set_name}--{cond}.json"
                path.parent.mkdir(exist_ok=True)
                path.write_text(json.dumps({"paths": [str(i) for i in range(60)], "labels": labels.tolist(),
                                            "scores": scores.tolist()}))
    result = recipe.seed_matched(list(runs), "apn-no-implicit", tmp_path)
    assert list(result) == ["apn-no-implicit-s1 − apn-no-band-proposal-s1"]
    delta = result["apn-no-implicit-s1 − apn-no-band-proposal-s1"]["modern-2025/as-is"]
    assert delta["delta_auc"] > 0 and delta["ci95"][0] < delta["delta_auc"] < delta["ci95"][1]


@pytest.mark.parametrize(("teacher", "says"), [(None, "explicit purification only (the apn-no-implicit run"),
                                               ("clip_b16", "implicit purification (clip_b16 teacher)")])
def test_shipping_pins_the_file_in_the_registry_and_describes_the_run(tmp_path: Path, monkeypatch,
                                                                      teacher: str | None, says: str) -> None:
    """A shipped default must pass the registry's own integrity check (sha256 and size of the very file)
    and say which purification it was trained with."""
    import shutil

    import train_default as recipe
    from apn_testing import checkpoint_metadata, tiny_model

    from apncli.engine import checkpoint, registry

    repo = tmp_path / "repo"
    shutil.copytree(registry.weights_dir(), repo / "weights", ignore=shutil.ignore_patterns("*.safetensors"))
    monkeypatch.setattr(recipe, "REPO", repo)
    model = tiny_model()
    meta = checkpoint_metadata(model)
    meta["training"] = {"hyperparameters": {"teacher": teacher}}
    run = tmp_path / "work" / "apn-no-implicit-s0"
    run.mkdir(parents=True)
    checkpoint.save_checkpoint(run / "model.safetensors", model.state_dict(), meta)
    dest = recipe.ship("apn-no-implicit-s0", tmp_path / "work", {}, "python recipes/train_default.py")
    entry = registry._parse_registry(repo / "weights" / "registry.json")[recipe.SHIP_NAME]
    assert entry.default and entry.size == dest.stat().st_size
    assert entry.sha256 == checkpoint.file_sha256(dest)
    assert says in entry.description
