"""Detection metrics in plain numpy (no scikit-learn dependency).

Conventions: ``labels`` are 1 for AI-generated ("fake", the positive class) and 0 for real; ``scores`` are
p(AI-generated). A score at or above the threshold is called AI-generated, the same rule ``apn scan`` uses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "TPR_TARGETS",
    "accuracy_at",
    "average_precision",
    "bootstrap_ci",
    "detection_report",
    "paired_difference_ci",
    "percentile_interval",
    "roc_auc",
    "roc_points",
    "tpr_at_fpr",
]


#: The TPR-at-FPR figures ``detection_report`` gives: report key → false-positive budget.
TPR_TARGETS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_5pct_fpr": 0.05}


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (AI-generated)")
    return y, s


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks where tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], sorted_vals.size]
    run_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney rank statistic; a tie between a real and a fake counts one half.

    Returns NaN when one class is absent (the AUC is undefined, not 0.5).
    """
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _midranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, highest threshold first, starting at (0, 0).

    Point k counts ``score >= thresholds[k]`` as AI-generated; the first point uses +inf (nothing flagged).
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True] if s.size else np.zeros(0, bool)
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = np.cumsum(1 - y_sorted)[last_of_run]
    n_pos, n_neg = max(int(y.sum()), 1), max(int(y.size - y.sum()), 1)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    return fpr, tpr, thresholds


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP with scikit-learn's definition: sum over thresholds of (R_n - R_{n-1}) * P_n, no interpolation."""
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_run].astype(np.float64)
    predicted = (np.flatnonzero(last_of_run) + 1).astype(np.float64)
    precision = tp / predicted
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> float:
    """Highest TPR among ROC points whose FPR does not exceed ``target_fpr`` (no interpolation).

    This is the conservative reading: it is a TPR some real threshold achieves without going over the
    false-positive budget on this data.
    """
    y, _ = _check(labels, scores)
    if y.sum() == 0 or y.sum() == y.size:
        return float("nan")
    fpr, tpr, _ = roc_points(labels, scores)
    ok = fpr <= target_fpr + 1e-12
    return float(tpr[ok].max())


def accuracy_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy on reals, on fakes and overall, flagging ``score >= threshold``."""
    y, s = _check(labels, scores)
    pred = s >= threshold
    real, fake = y == 0, y == 1
    nan = float("nan")
    return {
        "acc_real": float((~pred[real]).mean()) if real.any() else nan,
        "acc_fake": float(pred[fake].mean()) if fake.any() else nan,
        "acc": float((pred == (y == 1)).mean()) if y.size else nan,
    }


def bootstrap_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval, resampling reals and fakes separately so each replicate has both."""
    y, s = _check(labels, scores)
    return percentile_interval([metric(y[idx], s[idx]) for idx in _resamples(y, n_boot, seed)], level)


def _resamples(labels: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """``n_boot`` bootstrap index sets, each drawing reals and fakes separately (with replacement)."""
    if labels.size == 0:
        return []
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in (0, 1)]
    return [
        np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups if g.size])
        for _ in range(max(0, n_boot))
    ]


def percentile_interval(replicates: list[float], level: float) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap replicates (NaN replicates ignored; NaN if none left)."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_difference_ci(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float] = roc_auc,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap interval of ``metric(a) - metric(b)`` with both detectors scored on the same resamples.

    Why: two detectors scored on one small test set share its luck, so their separate intervals overlap
    even when one is reliably better; the paired difference says whether it is.
    """
    y, a = _check(labels, scores_a)
    _, b = _check(labels, scores_b)
    replicates = [metric(y[idx], a[idx]) - metric(y[idx], b[idx]) for idx in _resamples(y, n_boot, seed)]
    return percentile_interval(replicates, level)


def detection_report(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, float | int | list[float]]:
    """Every number ``apn eval`` prints for one generator, optionally with bootstrap intervals."""
    y, s = _check(labels, scores)
    report: dict[str, float | int | list[float]] = {
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        **accuracy_at(y, s, threshold),
        "ap": average_precision(y, s),
        "auc": roc_auc(y, s),
        **{key: tpr_at_fpr(y, s, target) for key, target in TPR_TARGETS.items()},
    }
    if n_boot > 0:
        report["auc_ci"] = list(bootstrap_ci(y, s, roc_auc, n_boot, seed))
        report["acc_ci"] = list(
            bootstrap_ci(y, s, lambda a, b: accuracy_at(a, b, threshold)["acc"], n_boot, seed)
        )
    return report
