"""``apn train`` and ``apn eval`` through the real Typer app (typer.testing.CliRunner)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from synthdata import TINY_TRAIN_FLAGS, make_folder_dataset
from typer.testing import CliRunner

from apncli.cli.app import app
from apncli.data.augment import Perturbation
from apncli.data.images import decode_image
from apncli.engine.checkpoint import file_sha256, read_metadata
from apncli.engine.detector import Detector
from apncli.training.metrics import roc_auc


def _train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--dataset", "folder", "--data-root", str(data), "--out", str(out)]


def test_train_writes_a_checkpoint_that_eval_reads(tmp_path: Path) -> None:
    data = make_folder_dataset(tmp_path / "data", n=8, gens=("gen_a", "gen_b"))
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            *_train_args(data, out),
            *TINY_TRAIN_FLAGS,
            *("--epochs", "1", "--max-steps", "2", "--club-data", "reuse", "--val-fraction", "0.25"),
            *("--quality", "70-95", "--loss-weights", "pull=0.5", "--lr-step", "1"),
        ],
    )
    assert result.exit_code == 0, result.output
    hyper = read_metadata(out / "model.safetensors")["training"]["hyperparameters"]
    assert hyper["step_size"] == 1
    assert result.stdout.strip().splitlines()[-1] == str(out / "model.safetensors")
    assert "summary" in result.stderr and (out / "model.safetensors").is_file()

    eval_args = ["eval", "--dataset", "folder", "--data-root", str(data), "--weights",
                 str(out / "model.safetensors"), "--device", "cpu"]
    result = runner.invoke(
        app, [*eval_args, "--json", "--bootstrap", "20", "--perturb", "jpeg:80", "--align-format", "jpeg:95"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["align_format"] == "jpeg:95" and doc["shared_reals"] is True
    assert list(doc["results"]) == ["none", "jpeg:80"]
    rows = doc["results"]["none"]["generators"]
    assert set(rows) == {"gen_a", "gen_b"} and rows["gen_a"]["n_real"] == 8 and rows["gen_b"]["n_fake"] == 8
    assert rows["gen_a"]["auc"] == pytest.approx(_auc_of(out, data, "gen_a"), abs=1e-9)
    assert rows["gen_a"]["auc_ci"][0] <= rows["gen_a"]["auc"] <= rows["gen_a"]["auc_ci"][1]
    assert doc["results"]["none"]["mean"]["n_fake"] == 16
    assert doc["results"]["none"]["mean"]["n_real"] == 8  # the reals both generators share count once

    table = runner.invoke(app, [*eval_args, "--bootstrap", "0"])
    assert table.exit_code == 0 and "gen_b" in table.stdout and "mean" in table.stdout

    # Every .safetensors file of the run folder loads, and the folder itself means its model.safetensors.
    assert sorted(out.glob("*.safetensors")) == [out / "model.safetensors"]
    by_folder = runner.invoke(app, ["scan", "--weights", str(out), "--device", "cpu", "--jsonl",
                                    str(data / "real" / "img000.png")])
    assert by_folder.exit_code in (0, 1), by_folder.output
    assert json.loads(by_folder.stdout)["model"]["sha256"] == file_sha256(out / "model.safetensors")


def _auc_of(run: Path, data: Path, generator: str) -> float:
    """ROC-AUC of the run's detector on the reals vs one generator, both re-encoded as JPEG 95 first."""
    files = sorted((data / "real").glob("*.png")) + sorted((data / "fake" / generator).glob("*.png"))
    labels = np.array([0 if f.parent.name == "real" else 1 for f in files])
    detector = Detector.load(run / "model.safetensors", device="cpu")
    align = Perturbation.parse("jpeg:95")
    return roc_auc(labels, detector.predict([align(decode_image(f).pixels) for f in files]))


def test_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    data = make_folder_dataset(tmp_path / "data", n=2)
    bad = runner.invoke(app, [*_train_args(data, tmp_path / "o"), "--loss-weights", "nope=1"])
    assert bad.exit_code != 0 and "nope" in str(bad.exception or bad.output)
    bad = runner.invoke(app, [*_train_args(data, tmp_path / "o"), "--lr-step", "0"])
    assert bad.exit_code == 2 and "--lr-step" in bad.output
    bad = runner.invoke(
        app,
        ["eval", "--dataset", "folder", "--data-root", str(data), "--weights", "x", "--perturb", "sharpen:2"],
    )
    assert bad.exit_code != 0 and "sharpen" in str(bad.exception or bad.output)


def test_tiny_calibration_is_flagged_and_files_are_readable(tmp_path: Path) -> None:
    """A threshold from a handful of reals comes with a warning, on screen and in the checkpoint; the
    loader defaults to the CPUs the process may use; the model file gets the usual permissions."""
    from apncli.engine.device import available_cpus

    data = make_folder_dataset(tmp_path / "data", n=6, gens=("gen_a",))
    out = tmp_path / "run"
    flags = [f for f in TINY_TRAIN_FLAGS if f not in ("--workers", "0")]
    result = CliRunner().invoke(app, [*_train_args(data, out), *flags, "--epochs", "1", "--max-steps", "1",
                                      "--club-data", "reuse", "--val-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    assert "warning: threshold calibrated on only" in result.stderr
    assert "needs at least 40 held-back reals" in result.stderr
    meta = read_metadata(out / "model.safetensors")
    calibration = meta["metrics"]["calibration"]
    assert calibration["n_real"] < 40 and calibration["warnings"]
    low, high = meta["inconclusive_band"]
    if low >= high:
        assert "inconclusive band is empty" in result.stderr
    assert meta["training"]["hyperparameters"]["workers"] == available_cpus()
    assert "DataLoader will create" not in result.output
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) == 0o666 & ~mask


def test_an_ablation_trains_scans_and_refuses_explain(tmp_path: Path, run_apn) -> None:
    """`--branches spatial --feature-space unit` trains the ablation without the frequency-band proposal:
    its checkpoint says so, scans, and `apn explain` refuses it in one line (it has no bands to show)."""
    data = make_folder_dataset(tmp_path / "data", n=6, gens=("gen_a",))
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, [*_train_args(data, out), *TINY_TRAIN_FLAGS, "--epochs", "1",
                                 "--max-steps", "2", "--club-data", "reuse", "--val-fraction", "0.5",
                                 "--branches", "spatial", "--feature-space", "unit"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out / "model.safetensors")
    assert meta["config"]["branches"] == "spatial"
    assert meta["training"]["hyperparameters"]["feature_space"] == "unit"
    image = str(data / "real" / "img000.png")
    scan = runner.invoke(app, ["scan", "--weights", str(out), "--device", "cpu", "--jsonl", image])
    assert scan.exit_code in (0, 1) and 0 <= json.loads(scan.stdout)["p_ai"] <= 1
    explain = run_apn("explain", "--weights", out, "--device", "cpu", image)
    assert explain.code == 2 and explain.stdout == ""
    assert explain.stderr.strip().count("\n") == 0 and "no frequency branch" in explain.stderr
    bad = run_apn(*_train_args(data, tmp_path / "o"), "--feature-space", "cosine")
    assert bad.code == 2 and "--feature-space must be one of raw, unit" in bad.stderr


def test_straight_through_masks_train_and_are_recorded(tmp_path: Path, run_apn) -> None:
    """`--mask straight-through` (the band-mask ablation: hard values, soft gradient) trains, the checkpoint
    records it so scans rebuild the same network, and an unknown mode is refused in one line."""
    data = make_folder_dataset(tmp_path / "data", n=6, gens=("gen_a",))
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, [*_train_args(data, out), *TINY_TRAIN_FLAGS, "--epochs", "1",
                                 "--max-steps", "2", "--club-data", "reuse", "--val-fraction", "0.5",
                                 "--mask", "straight-through"])
    assert result.exit_code == 0, result.output
    assert read_metadata(out / "model.safetensors")["config"]["mask"] == "straight-through"
    scan = runner.invoke(app, ["scan", "--weights", str(out), "--device", "cpu", "--jsonl",
                               str(data / "real" / "img000.png")])
    assert scan.exit_code in (0, 1) and 0 <= json.loads(scan.stdout)["p_ai"] <= 1
    bad = run_apn(*_train_args(data, tmp_path / "o"), "--mask", "fuzzy")
    assert bad.code == 2 and bad.stderr.strip().count("\n") == 0 and "mask must be one of" in bad.stderr
