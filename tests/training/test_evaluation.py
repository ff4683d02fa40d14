"""Scoring labelled files per generator: shared reals, perturbations, alignment, skipped files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from synthdata import write_images

from apncli.data.augment import Perturbation, parse_perturbations
from apncli.data.layouts import EvalGroup, Sample
from apncli.training.evaluation import evaluate_groups, mean_report


class CountingPredictor:
    """Score = mean brightness / 255; counts how many images it was asked about."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        self.seen += len(images)
        return np.array([img.mean() / 255.0 for img in images])


@pytest.fixture
def groups(tmp_path: Path) -> dict[str, EvalGroup]:
    reals = [Sample(p, 0, "real") for p in write_images(tmp_path / "real", 3, False, 0)]
    (tmp_path / "real" / "bad.png").write_text("not an image")
    reals.append(Sample(tmp_path / "real" / "bad.png", 0, "real"))
    fa = [Sample(p, 1, "a") for p in write_images(tmp_path / "a", 2, True, 1)]
    fb = [Sample(p, 1, "b") for p in write_images(tmp_path / "b", 2, True, 2)]
    return {"a": EvalGroup("a", reals, fa), "b": EvalGroup("b", reals, fb)}


def test_shared_reals_are_scored_once_and_reported_per_generator(groups: dict[str, EvalGroup]) -> None:
    predict = CountingPredictor()
    report = evaluate_groups(predict, groups, threshold=0.5, workers=1)
    assert predict.seen == 3 + 2 + 2  # three readable reals, once, plus the fakes
    rows = report["results"]["none"]["generators"]
    assert rows["a"]["n_real"] == rows["b"]["n_real"] == 3 and rows["a"]["n_fake"] == 2
    assert rows["a"]["acc_real"] == rows["b"]["acc_real"]  # same reals, same threshold
    assert len(report["skipped"]) == 1 and "bad.png" in report["skipped"][0]
    mean = report["results"]["none"]["mean"]
    assert mean["n_fake"] == 4 and mean["auc"] == pytest.approx((rows["a"]["auc"] + rows["b"]["auc"]) / 2)


def test_each_perturbation_is_evaluated_separately_after_alignment(groups: dict[str, EvalGroup]) -> None:
    predict = CountingPredictor()
    perts = parse_perturbations("resize:0.5,blur:2")
    report = evaluate_groups(
        predict, groups, 0.5, perts, align=Perturbation("jpeg", 95), n_boot=20, workers=1
    )
    assert list(report["results"]) == ["none", "resize:0.5", "blur:2"]
    assert predict.seen == 3 * 7
    assert "auc_ci" in report["results"]["blur:2"]["generators"]["a"]


def test_mean_report_ignores_nan_and_sums_counts() -> None:
    rows = [{"n_real": 2, "auc": 0.5, "ap": float("nan")}, {"n_real": 3, "auc": 1.0, "ap": float("nan")}]
    mean = mean_report(rows)
    assert mean["n_real"] == 5 and mean["auc"] == 0.75 and math.isnan(mean["ap"])


def test_every_unreadable_file_is_listed_once_even_when_names_share_a_prefix(tmp_path: Path) -> None:
    """Five unreadable files whose names agree up to ": " are five entries, not one (nor ten)."""
    reals = [Sample(p, 0, "real") for p in write_images(tmp_path / "real", 2, False, 0)]
    for i in range(5):
        bad = tmp_path / "real" / f"scan: {i}.png"
        bad.write_text("not an image")
        reals.append(Sample(bad, 0, "real"))
    fakes = [Sample(p, 1, "a") for p in write_images(tmp_path / "a", 2, True, 1)]
    groups = {"a": EvalGroup("a", reals, fakes)}
    report = evaluate_groups(CountingPredictor(), groups, 0.5, parse_perturbations("blur:1"), workers=1)
    listed = [Path(m.rsplit(": ", 1)[0]).name for m in report["skipped"]]
    assert listed == [f"scan: {i}.png" for i in range(5)]
