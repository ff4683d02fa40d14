"""The issue's "done when": train on a GenImage-shaped folder, eval every generator, scan with the result."""

from __future__ import annotations

import json
from pathlib import Path

from synthdata import TINY_TRAIN_FLAGS, write_images

from apncli.engine.checkpoint import read_metadata
from apncli.engine.detector import Detector

GENERATORS = {"sdv14": "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4", "adm": "ADM/imagenet_ai_0508_adm"}


def _genimage_tree(root: Path) -> Path:
    for seed, folder in enumerate(GENERATORS.values()):
        for split, n in (("train", 8), ("val", 4)):
            write_images(root / folder / split / "nature", n, False, seed * 10 + len(split), 40)
            write_images(root / folder / split / "ai", n, True, seed * 10 + len(split) + 5, 40)
    return root


def test_genimage_train_eval_scan(run_apn, tmp_path: Path) -> None:
    data = _genimage_tree(tmp_path / "GenImage")
    out = tmp_path / "run"
    trained = run_apn("train", "--dataset", "genimage", "--data-root", data, "--train-on", "sdv14",
                      "--out", out, *TINY_TRAIN_FLAGS, "--epochs", "1", "--max-steps", "2", "--quiet")
    assert trained.code == 0, trained.stderr
    weights = out / "model.safetensors"
    meta = read_metadata(weights)
    assert meta["config"]["name"] == "tiny"
    assert meta["training"]["dataset"] == "genimage"

    evaluated = run_apn("eval", "--dataset", "genimage", "--data-root", data, "--weights", weights,
                        "--json", "--device", "cpu", "--bootstrap", "10")
    assert evaluated.code == 0, evaluated.stderr
    results = json.loads(evaluated.stdout)["results"]["none"]
    assert set(results["generators"]) == set(GENERATORS)
    assert all(row["n_real"] == 4 and row["n_fake"] == 4 for row in results["generators"].values())

    scanned = run_apn("scan", data / GENERATORS["adm"] / "val", "-r", "--jsonl", "--weights", weights)
    records = [json.loads(line) for line in scanned.stdout.splitlines()]
    assert len(records) == 8 and all(r["error"] is None for r in records)
    assert {r["threshold"] for r in records} == {meta["threshold"]}  # the calibrated rule of the run
    detector = Detector.load(weights, device="cpu")
    assert [r["verdict"] for r in records] == [detector.verdict(r["p_ai"]) for r in records]
    assert scanned.code == (1 if any(r["verdict"] == "ai-generated" for r in records) else 0)
