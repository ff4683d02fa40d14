"""``apn train`` and ``apn eval`` through the real Typer app (typer.testing.CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

from synthdata import TINY_TRAIN_FLAGS, make_folder_dataset
from typer.testing import CliRunner

from apncli.cli.app import app
from apncli.engine.checkpoint import read_metadata


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
    assert 0 <= rows["gen_a"]["auc"] <= 1 and len(rows["gen_a"]["auc_ci"]) == 2
    assert doc["results"]["none"]["mean"]["n_fake"] == 16

    table = runner.invoke(app, [*eval_args, "--bootstrap", "0"])
    assert table.exit_code == 0 and "gen_b" in table.stdout and "mean" in table.stdout


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
