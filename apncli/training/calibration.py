"""Decision-threshold calibration on held-back real images.

The threshold is chosen so that at most ``target_fpr`` of the held-back reals score at or above it (the
rule ``apn scan`` applies). The ``inconclusive`` band is the score interval between the thresholds that
would give twice and half the target false-positive rate: a score inside it would be flagged under a
looser false-positive budget but not under a stricter one, so the verdict there depends on a choice the
data cannot settle. It is deterministic (no bootstrap), always contains the threshold, and narrows as the
calibration set grows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Calibration", "calibrate", "reals_needed", "threshold_for_fpr"]


def threshold_for_fpr(real_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest-margin threshold in [0, 1] whose false-positive rate on ``real_scores`` is <= target.

    With ``m = floor(target * n)`` false positives allowed, the threshold must lie above the (m+1)-th
    highest real score; it is put midway to the m-th highest so it does not sit on a training point.

    Raises ``ValueError`` when no such threshold exists: scores at or above a threshold are flagged, so
    when more than ``m`` reals score exactly 1.0 (a saturated model) every threshold in [0, 1] flags them.
    """
    s = np.sort(np.asarray(real_scores, dtype=np.float64).ravel())
    if s.size == 0:
        raise ValueError("cannot calibrate a threshold without real images")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target FPR must be in [0, 1), got {target_fpr}")
    n = s.size
    allowed = math.floor(target_fpr * n + 1e-9)
    must_exceed = s[n - allowed - 1]  # the (allowed+1)-th highest real score
    if must_exceed >= 1.0:
        saturated = int((s >= 1.0).sum())
        raise ValueError(
            f"no threshold in [0, 1] keeps the false-positive rate at or below {target_fpr:g}: "
            f"{saturated} of {n} real scores are 1.0 (saturated) and would all be flagged"
        )
    # the m-th highest real score bounds the midpoint from above; with m = 0 a hair above the maximum
    upper = s[n - allowed] if allowed else min(1.0, must_exceed + 1e-6)
    threshold = (must_exceed + upper) / 2.0 if upper > must_exceed else float(np.nextafter(must_exceed, 2.0))
    return float(min(max(threshold, 0.0), 1.0))


@dataclass(frozen=True)
class Calibration:
    """A calibrated operating point, stored in the checkpoint metadata."""

    threshold: float
    inconclusive_band: tuple[float, float]
    target_fpr: float
    achieved_fpr: float
    tpr: float
    n_real: int
    n_fake: int
    method: str = "fpr-interval: band = [thr@2*target, thr@target/2]"
    warnings: tuple[str, ...] = ()  # why this operating point should not be trusted (too few images, ...)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inconclusive_band"] = list(self.inconclusive_band)
        d["warnings"] = list(self.warnings)
        return d


def reals_needed(target_fpr: float) -> int:
    """Held-back reals for a threshold at ``target_fpr`` to mean something: the band's strict edge
    (half the target) must allow at least one false positive, so n >= 2 / target (40 at 5 %)."""
    return math.ceil(2.0 / target_fpr - 1e-9) if target_fpr > 0 else 0


def _warnings(n_real: int, n_fake: int, target_fpr: float, band: tuple[float, float]) -> tuple[str, ...]:
    out = []
    needed = reals_needed(target_fpr)
    if n_real < needed:
        out.append(f"threshold calibrated on only {n_real} real and {n_fake} fake image(s); a "
                   f"{target_fpr:.0%} false-positive target needs at least {needed} held-back reals: "
                   "treat the threshold as a placeholder (more data or a larger --val-fraction)")
    if band[0] >= band[1]:
        out.append("the inconclusive band is empty (too few held-back reals to separate the thresholds at "
                   "twice and half the target rate): scans will never answer 'inconclusive'")
    return tuple(out)


def calibrate(labels: np.ndarray, scores: np.ndarray, target_fpr: float = 0.05) -> Calibration:
    """Threshold at ``target_fpr`` on the reals in (labels, scores), with its inconclusive band.

    Raises ``ValueError`` (see :func:`threshold_for_fpr`) when saturated reals make the target
    unreachable. When only the stricter half-target is unreachable, the band reaches up to 1.0.
    """
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    real = s[y == 0]
    thr = threshold_for_fpr(real, target_fpr)
    lo = threshold_for_fpr(real, min(2.0 * target_fpr, 0.999))
    try:
        hi = threshold_for_fpr(real, target_fpr / 2.0)
    except ValueError:  # no threshold meets the stricter budget: saturated scores stay undecided
        hi = 1.0
    lo, hi = min(lo, thr), max(hi, thr)
    n_fake = int((y == 1).sum())
    return Calibration(
        threshold=thr,
        inconclusive_band=(lo, hi),
        target_fpr=float(target_fpr),
        achieved_fpr=float((real >= thr).mean()),
        tpr=float((s[y == 1] >= thr).mean()) if (y == 1).any() else float("nan"),
        n_real=int(real.size),
        n_fake=n_fake,
        warnings=_warnings(int(real.size), n_fake, float(target_fpr), (lo, hi)),
    )
