"""Threshold calibration hits the target false-positive rate; the inconclusive band brackets it."""

from __future__ import annotations

import numpy as np
import pytest

from apncli.training.calibration import calibrate, threshold_for_fpr


@pytest.mark.parametrize("target", [0.01, 0.05, 0.1])
def test_calibration_hits_target_fpr_on_a_synthetic_distribution(target: float) -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.beta(2, 5, 20_000), rng.beta(5, 2, 20_000)
    labels = np.r_[np.zeros(real.size), np.ones(fake.size)]
    cal = calibrate(labels, np.r_[real, fake], target)
    assert cal.achieved_fpr <= target
    assert cal.achieved_fpr == pytest.approx(target, abs=0.002)
    fresh = rng.beta(2, 5, 50_000)  # generalises to new reals from the same distribution
    assert (fresh >= cal.threshold).mean() == pytest.approx(target, abs=0.1 * target + 0.002)
    lo, hi = cal.inconclusive_band
    assert lo <= cal.threshold <= hi
    assert (real >= lo).mean() == pytest.approx(min(2 * target, 1), abs=0.002)
    assert (real >= hi).mean() == pytest.approx(target / 2, abs=0.002)
    assert cal.n_real == cal.n_fake == 20_000 and 0 < cal.tpr <= 1


def test_threshold_sits_between_scores_and_handles_ties() -> None:
    reals = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    assert threshold_for_fpr(reals, 0.1) == pytest.approx((0.9 + 0.95) / 2)  # one FP allowed
    assert threshold_for_fpr(reals, 0.05) > 0.95  # none allowed
    tied = np.array([0.5] * 10)
    t = threshold_for_fpr(tied, 0.2)
    assert (tied >= t).mean() == 0.0 and t > 0.5


def test_small_sets_and_bounds() -> None:
    cal = calibrate(np.array([0, 0, 0, 1]), np.array([0.2, 0.3, 0.4, 0.9]), 0.05)
    assert 0.4 < cal.threshold < 0.9 and cal.achieved_fpr == 0.0 and cal.tpr == 1.0
    assert threshold_for_fpr(np.array([0.2, 0.999999]), 0.05) <= 1.0  # never leaves [0, 1]
    with pytest.raises(ValueError, match="without real images"):
        threshold_for_fpr(np.array([]), 0.05)
    assert cal.to_dict()["inconclusive_band"] == list(cal.inconclusive_band)


def test_tiny_sets_and_empty_bands_are_said() -> None:
    tiny = calibrate(np.array([0, 1]), np.array([0.3, 0.8]), 0.05)
    assert tiny.n_real == 1 and tiny.n_fake == 1
    assert any("only 1 real and 1 fake" in w for w in tiny.warnings)
    assert tiny.inconclusive_band[0] >= tiny.inconclusive_band[1]
    assert any("inconclusive band is empty" in w for w in tiny.warnings)
    rng = np.random.default_rng(0)
    ample = calibrate(np.r_[np.zeros(400), np.ones(400)], np.r_[rng.random(400), rng.random(400)], 0.05)
    assert ample.warnings == () and ample.to_dict()["warnings"] == []


def test_saturated_reals_are_never_flagged_by_a_returned_threshold() -> None:
    """Scores >= threshold are flagged, so reals at p = 1.0 admit no threshold: an error, not t = 1.0."""
    with pytest.raises(ValueError, match=r"2 of 2 real scores are 1\.0"):
        threshold_for_fpr(np.array([1.0, 1.0]), 0.05)
    reals = np.r_[np.linspace(0.1, 0.5, 19), 1.0]  # one saturated real of 20: 5% allows exactly it
    assert threshold_for_fpr(reals, 0.05) < 1.0
    with pytest.raises(ValueError, match="saturated"):
        threshold_for_fpr(reals, 0.01)
    cal = calibrate(np.r_[np.zeros(20), 1], np.r_[reals, 0.9], 0.05)
    assert cal.achieved_fpr == 0.05 and cal.inconclusive_band[1] == 1.0  # half the budget is out of reach
