"""Metrics against hand-computed values and brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apncli.training.metrics import (
    accuracy_at,
    average_precision,
    bootstrap_ci,
    detection_report,
    paired_difference_ci,
    roc_auc,
    roc_points,
    tpr_at_fpr,
)

# reals 0.1 0.4 0.35 0.8 | fakes 0.35 0.9 0.7 0.8 (two real/fake ties)
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.35, 0.9, 0.7, 0.8])


def test_auc_by_hand_with_ties() -> None:
    # fake 0.35: 1 win + 1 tie; 0.9: 4 wins; 0.7: 3 wins; 0.8: 3 wins + 1 tie → 12 / 16
    assert roc_auc(LABELS, SCORES) == pytest.approx(0.75)


def test_average_precision_by_hand() -> None:
    # thresholds 0.9, 0.8, 0.7, 0.4, 0.35, 0.1 → recall steps of 1/4 at precisions 1, 2/3, 3/4, 4/7
    assert average_precision(LABELS, SCORES) == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)


def test_roc_points_and_tpr_at_fpr_by_hand() -> None:
    fpr, tpr, thr = roc_points(LABELS, SCORES)
    assert fpr.tolist() == [0, 0, 0.25, 0.25, 0.5, 0.75, 1]
    assert tpr.tolist() == [0, 0.25, 0.5, 0.75, 0.75, 1, 1]
    assert thr[0] == math.inf and thr[1:].tolist() == [0.9, 0.8, 0.7, 0.4, 0.35, 0.1]
    assert tpr_at_fpr(LABELS, SCORES, 0.01) == 0.25
    assert tpr_at_fpr(LABELS, SCORES, 0.05) == 0.25
    assert tpr_at_fpr(LABELS, SCORES, 0.25) == 0.75
    assert tpr_at_fpr(LABELS, SCORES, 0.74) == 0.75


def test_accuracy_by_hand() -> None:
    assert accuracy_at(LABELS, SCORES, 0.5) == {"acc_real": 0.75, "acc_fake": 0.75, "acc": 0.75}
    # a score equal to the threshold is flagged (same rule as scan)
    assert accuracy_at(LABELS, SCORES, 0.8) == {"acc_real": 0.75, "acc_fake": 0.5, "acc": 0.625}


def test_report_collects_everything() -> None:
    rep = detection_report(LABELS, SCORES, 0.5, n_boot=200, seed=1)
    assert rep["n_real"] == 4 and rep["n_fake"] == 4 and rep["auc"] == pytest.approx(0.75)
    lo, hi = rep["auc_ci"]
    assert 0 <= lo <= 0.75 <= hi <= 1
    assert detection_report(LABELS, SCORES, 0.5, n_boot=200, seed=1) == rep  # seeded


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_ap_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[:2] = [0, 1]
    s = rng.integers(0, 8, 60) / 8.0  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(pairs / (pos.size * neg.size))
    # AP = mean over positives of the precision at that positive's score (ties counted together)
    brute = np.mean([(y[s >= t] == 1).mean() for t in pos])
    assert average_precision(y, s) == pytest.approx(brute)


def test_degenerate_inputs() -> None:
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(average_precision([0, 0], [0.2, 0.3]))
    assert math.isnan(tpr_at_fpr([0, 0], [0.2, 0.3], 0.05))
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert math.isnan(accuracy_at([0], [0.1], 0.5)["acc_fake"])
    with pytest.raises(ValueError):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        roc_auc([0, 1], [0.1])
    assert all(math.isnan(v) for v in bootstrap_ci([0, 1], [0.1, 0.2], roc_auc, n_boot=0))


def test_paired_difference_sees_a_consistent_edge_that_separate_intervals_hide() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    weaker = rng.normal(size=200) + 0.8 * labels
    stronger = weaker + 0.15 * labels  # the same images, every fake scored a little higher
    _, hi_weak = bootstrap_ci(labels, weaker, roc_auc, 500, seed=1)
    lo_strong, _ = bootstrap_ci(labels, stronger, roc_auc, 500, seed=1)
    assert lo_strong < hi_weak  # the separate intervals overlap...
    lo, hi = paired_difference_ci(labels, stronger, weaker, n_boot=500, seed=1)
    assert 0 < lo < roc_auc(labels, stronger) - roc_auc(labels, weaker) < hi  # ...the paired one does not
    assert paired_difference_ci(labels, weaker, weaker, n_boot=50) == (0.0, 0.0)
    lo_rev, hi_rev = paired_difference_ci(labels, weaker, stronger, n_boot=500, seed=1)
    assert (lo_rev, hi_rev) == pytest.approx((-hi, -lo))
