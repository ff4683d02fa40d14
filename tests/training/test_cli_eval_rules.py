"""What `apn eval` tells a researcher about its own numbers: which rule each uses, what a scan would call
inconclusive, when a set is too small to trust, and what the help says about layouts and exit codes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from apn_testing import save_tiny_checkpoint, write_image
from PIL import Image

from apncli.data.layouts import EvalGroup, Sample
from apncli.training.evaluation import evaluate_groups, small_set_warning


def _flat(path: Path) -> Path:
    """A flat grey image: too little texture for any verdict (scan calls it inconclusive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (120, 120, 120)).save(path)
    return path


@pytest.fixture
def eval_set(tmp_path: Path) -> Path:
    """real/: 2 noise images, 1 flat, 1 unreadable; fake/genA/: 2 noise images, 1 flat."""
    root = tmp_path / "ev"
    for folder, seed in (("real", 0), ("fake/genA", 10)):
        (root / folder).mkdir(parents=True)
        for i in range(2):
            write_image(root / folder / f"noise{i}.png", seed=seed + i)
        _flat(root / folder / "flat.png")
    (root / "real" / "broken.png").write_text("not an image")
    return root


def _eval(run_apn, root: Path, weights: Path, *extra: object):
    return run_apn("eval", "--dataset", "folder", "--data-root", root, "--weights", weights,
                   "--device", "cpu", *extra)


def _scan_inconclusive(run_apn, root: Path, weights: Path, *extra: object) -> Counter:
    """Inconclusive verdicts of `apn scan` over the set, by class folder (real / fake)."""
    scan = run_apn("scan", "-r", "--jsonl", "--weights", weights, "--device", "cpu", *extra, root)
    records = [json.loads(line) for line in scan.stdout.splitlines()]
    return Counter(Path(r["path"]).relative_to(root).parts[0] for r in records
                   if r["verdict"] == "inconclusive")


@pytest.mark.parametrize("threshold", [(), ("--threshold", "0.5")])
def test_eval_counts_the_images_scan_calls_inconclusive(run_apn, eval_set: Path, tmp_path: Path,
                                                        threshold: tuple[str, ...]) -> None:
    """A band over all of (0, 1): scan calls everything inconclusive, and eval counts exactly that; with
    --threshold the band is off in both, and only the flat (low-signal) images remain inconclusive."""
    weights = save_tiny_checkpoint(tmp_path / "w.safetensors", band=(0.0, 1.0))
    result = _eval(run_apn, eval_set, weights, "--json", "--bootstrap", "0", *threshold)
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    row = doc["results"]["none"]["generators"]["genA"]
    scan = _scan_inconclusive(run_apn, eval_set, weights, *threshold)
    assert (row["n_inconclusive_real"], row["n_inconclusive_fake"]) == (scan["real"], scan["fake"])
    assert scan == ({"real": 1, "fake": 1} if threshold else {"real": 3, "fake": 3})
    mean = doc["results"]["none"]["mean"]
    assert (mean["n_inconclusive_real"], mean["n_inconclusive_fake"]) == (scan["real"], scan["fake"])
    assert row["acc_real"] + row["acc_fake"] > 0  # accuracies still count every image at the bare threshold
    assert "bare threshold" in doc["rules"]["acc_real, acc_fake, acc, acc_ci"]
    assert doc["inconclusive_band"] == (None if threshold else [0.0, 1.0])


def test_a_tiny_set_is_flagged_in_one_line_and_unmeasurable_figures_are_na(run_apn, eval_set: Path,
                                                                          tmp_path: Path) -> None:
    """3 readable reals cannot show a 1% or 5% FPR: those TPRs are null / n/a, one warning line says why,
    the mean row has intervals, and stderr has no blank line before the skipped-file note."""
    tiny_weights = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    result = _eval(run_apn, eval_set, tiny_weights, "--json", "--bootstrap", "50")
    assert result.code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("skipped unreadable file: ") and "broken.png" in lines[0]
    assert "" not in lines
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "3 reals and 3 fakes" in warnings[0]
    assert "TPR@1%: 100, TPR@5%: 20" in warnings[0] and "n/a" in warnings[0]
    doc = json.loads(result.stdout)
    assert doc["warnings"] == [warnings[0].removeprefix("warning: ")]
    result_none = doc["results"]["none"]
    for row in (result_none["generators"]["genA"], result_none["mean"]):
        assert row["tpr_at_1pct_fpr"] is None and row["tpr_at_5pct_fpr"] is None
    mean = result_none["mean"]
    assert mean["auc_ci"][0] <= mean["auc"] <= mean["auc_ci"][1]
    assert mean["acc_ci"][0] <= mean["acc"] <= mean["acc_ci"][1]
    table = _eval(run_apn, eval_set, tiny_weights, "--bootstrap", "50")
    mean_line = next(line for line in table.stdout.splitlines() if line.lstrip("│ ").startswith("mean"))
    assert mean_line.count("n/a") == 2 and mean_line.count("-") >= 2  # two TPRs n/a; both intervals shown


def test_small_set_warning_thresholds() -> None:
    """30 per class and 100 reals: no warning; 40 reals: only TPR@1% is unmeasurable."""
    def results(n_real: int, n_fake: int) -> dict:
        return {"none": {"generators": {"g": {"n_real": n_real, "n_fake": n_fake}}}}

    assert small_set_warning(results(100, 30)) is None
    only_1pct = small_set_warning(results(40, 40))
    assert only_1pct is not None and "TPR@1%: 100)" in only_1pct and "small" not in only_1pct


def test_the_mean_row_gets_a_bootstrap_interval(tmp_path: Path) -> None:
    """The cross-generator mean has its own interval: [1, 1] when every generator is perfectly separated,
    around the mean when one generator overlaps the (shared) reals."""
    def flat_samples(label: int, gen: str, levels: range) -> list[Sample]:
        paths = [tmp_path / f"{gen}-{level}.png" for level in levels]
        for path, level in zip(paths, levels, strict=True):
            Image.new("RGB", (8, 8), (level,) * 3).save(path)
        return [Sample(path, label, gen) for path in paths]

    reals = flat_samples(0, "real", range(10, 70, 10))
    groups = {"a": EvalGroup("a", reals, flat_samples(1, "a", range(200, 260, 10))),
              "b": EvalGroup("b", reals, flat_samples(1, "b", range(35, 95, 10)))}

    def brightness(images: list[np.ndarray]) -> np.ndarray:
        return np.array([image.mean() / 255 for image in images])

    only_a = evaluate_groups(brightness, {"a": groups["a"]}, 0.5, n_boot=40, workers=1)
    assert only_a["results"]["none"]["mean"]["auc_ci"] == [1.0, 1.0]
    mean = evaluate_groups(brightness, groups, 0.5, n_boot=200, workers=1)["results"]["none"]["mean"]
    low, high = mean["auc_ci"]
    assert low < mean["auc"] < 1.0 and low < high <= 1.0


def _plain(help_text: str) -> str:
    """Help text without the box-drawing frame and line breaks, for phrase checks."""
    return " ".join(help_text.replace("│", " ").split())


def test_eval_help_names_the_layouts_the_rule_of_each_number_and_the_exit_codes(run_apn, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    text = _plain(run_apn("eval", "--help").stdout)
    assert "folder (ROOT/{real,fake/<generator>} or {0_real,1_fake}" in text
    assert "acc real, acc fake and acc count every image at the bare threshold" in text
    assert "AP, AUC and TPR at 1% and 5% FPR use the raw scores" in text
    assert "'inconcl. real' and 'inconcl. fake' count the images `apn scan`" in text
    assert "Exit codes: 0 evaluated (unreadable files are skipped, each named on stderr)" in text


def test_an_unknown_generator_is_refused_naming_the_flag_given(run_apn, eval_set: Path) -> None:
    result = _eval(run_apn, eval_set, "unused.safetensors", "--generators", "nosuch")
    assert result.code == 2
    assert result.stderr.strip() == "error: --generators 'nosuch' not found; available: genA"
