"""Scoring labelled files with a ``Detector`` and turning the scores into per-generator reports.

Used by ``apn eval`` and by the trainer (validation, calibration), so a checkpoint is judged with exactly
the preprocessing ``apn scan`` applies (the detector's own crops and tile averaging).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from apncli.data.augment import Perturbation
from apncli.data.images import decode_image
from apncli.data.layouts import EvalGroup, Sample
from apncli.engine.verdicts import INCONCLUSIVE
from apncli.errors import one_line
from apncli.training.metrics import (
    TPR_TARGETS,
    accuracy_at,
    detection_report,
    percentile_interval,
    roc_auc,
)

__all__ = [
    "MIN_PER_CLASS",
    "ScoredSet",
    "evaluate_groups",
    "mean_report",
    "score_samples",
    "small_set_warning",
]

Transform = Callable[[np.ndarray], np.ndarray]
#: ``predict(images)``: p(AI) per image, or p(AI) and the verdict ``apn scan`` gives each image
#: (``Detector.judge``), which also counts the inconclusive ones.
Predict = Callable[[list[np.ndarray]], np.ndarray | tuple[np.ndarray, list[str]]]

MIN_PER_CLASS = 30
"""Fewer reals or fakes than this in a generator's set: its intervals are wide and its figures fragile."""


@dataclass
class ScoredSet:
    """Scores of the readable files of a sample list, plus one message per unreadable file."""

    samples: list[Sample] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    errors: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)  # one per sample when ``predict`` gave verdicts

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def inconclusive(self) -> np.ndarray | None:
        """Per sample, whether its verdict is ``inconclusive``; None when no verdicts were given."""
        if not self.verdicts:
            return None
        return np.array([v == INCONCLUSIVE for v in self.verdicts], dtype=bool)


def _load(path: Path, transform: Transform | None) -> np.ndarray | str:
    try:
        rgb = decode_image(path).pixels
        return transform(rgb) if transform is not None else rgb
    except Exception as exc:  # one bad file becomes a reported skip, never the end of an evaluation
        return f"{path}: {one_line(exc) or type(exc).__name__}"


def score_samples(
    predict: Predict,
    samples: Sequence[Sample],
    transform: Transform | None = None,
    chunk: int = 64,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> ScoredSet:
    """Decode (in threads), transform and score ``samples`` in chunks; unreadable files are skipped.

    When ``predict`` also gives verdicts, each scored image keeps its own (``ScoredSet.verdicts``).
    """
    out = ScoredSet()
    parts: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(samples), chunk):
            block = list(samples[start : start + chunk])
            loaded = list(pool.map(lambda s: _load(s.path, transform), block))
            images = [x for x in loaded if not isinstance(x, str)]
            out.errors += [x for x in loaded if isinstance(x, str)]
            out.samples += [s for s, x in zip(block, loaded, strict=True) if not isinstance(x, str)]
            if images:
                predicted = predict(images)
                if isinstance(predicted, tuple):
                    predicted, verdicts = predicted
                    out.verdicts += verdicts
                parts.append(np.asarray(predicted, dtype=np.float64))
            if on_progress is not None:
                on_progress(len(block))
    out.scores = np.concatenate(parts) if parts else np.zeros(0)
    return out


def _nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is left."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def mean_report(reports: Iterable[dict[str, Any]], counts: dict[str, int] | None = None) -> dict[str, Any]:
    """Cross-generator mean of every metric (each generator weighs the same).

    ``counts`` gives the row's ``n_*`` values, the distinct files behind it (reals shared by every
    generator count once); without it the per-generator counts are summed.
    """
    rows = list(reports)
    if not rows:
        return {}
    out: dict[str, Any] = {}
    for key, value in rows[0].items():
        if key.startswith("n_"):
            out[key] = int(counts[key]) if counts and key in counts else int(sum(r[key] for r in rows))
        elif isinstance(value, float):
            out[key] = _nanmean(r[key] for r in rows if isinstance(r.get(key), float))
    return out


def evaluate_groups(
    predict: Predict,
    groups: dict[str, EvalGroup],
    threshold: float,
    perturbations: Sequence[Perturbation] = (Perturbation("none"),),
    align: Perturbation | None = None,
    n_boot: int = 0,
    seed: int = 0,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Per-perturbation, per-generator reports; reals shared by generators are scored once per setting.

    ``align`` re-encodes every image of both classes first (e.g. JPEG q95) so that the file format cannot
    separate them; each perturbation is then applied on top, separately.

    Which rule each figure uses: accuracies count every image at the bare ``threshold`` (``score >=
    threshold`` is AI-generated, nothing is inconclusive); AP, AUC and TPR@FPR use the raw scores, and a
    TPR at an FPR finer than 1/reals is NaN (no threshold measures it on so few reals). When ``predict``
    gives verdicts every row also counts the reals and fakes whose verdict is ``inconclusive``
    (``n_inconclusive_real``, ``n_inconclusive_fake``). With ``n_boot`` every row, the mean included, gets
    AUC and accuracy intervals.
    """
    unique: dict[Path, Sample] = {}
    for g in groups.values():
        for s in (*g.reals, *g.fakes):
            unique.setdefault(s.path, s)
    files = sorted(unique.values())
    results: dict[str, Any] = {}
    skipped: dict[str, None] = {}  # insertion-ordered set of "path: reason", as the trainer keeps it
    for pert in perturbations:
        scored = score_samples(predict, files, _compose(align, pert), workers=workers,
                               on_progress=on_progress)
        skipped.update(dict.fromkeys(scored.errors))
        results[pert.name] = _setting_report(scored, groups, threshold, n_boot, seed)
    return {"results": results, "skipped": sorted(skipped)}


def _setting_report(scored: ScoredSet, groups: dict[str, EvalGroup], threshold: float, n_boot: int,
                    seed: int) -> dict[str, Any]:
    """The per-generator rows of one perturbation setting and their mean (see ``evaluate_groups``)."""
    labels, scores, inconclusive = scored.labels, scored.scores, scored.inconclusive
    members = {name: _members(scored.samples, (*g.reals, *g.fakes)) for name, g in groups.items()}
    per_gen: dict[str, Any] = {}
    for name, mask in members.items():
        row = detection_report(labels[mask], scores[mask], threshold, n_boot=n_boot, seed=seed)
        for key, target in TPR_TARGETS.items():
            if not _measurable(int(row["n_real"]), target):
                row[key] = float("nan")
        judged = None if inconclusive is None else inconclusive[mask]
        per_gen[name] = {**row, **_inconclusive_counts(labels[mask], judged)}
    distinct = {"n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
                **_inconclusive_counts(labels, inconclusive)}
    mean = mean_report(per_gen.values(), distinct)
    for key in TPR_TARGETS:  # a mean over only the generators with enough reals would compare unlike sets
        if any(math.isnan(row[key]) for row in per_gen.values()):
            mean[key] = float("nan")
    if n_boot > 0 and len(labels):
        mean.update(_mean_intervals(labels, scores, list(members.values()), threshold, n_boot, seed))
    return {"generators": per_gen, "mean": mean}


def _members(scored: Sequence[Sample], group: Iterable[Sample]) -> np.ndarray:
    """Boolean mask over ``scored``: which of them belong to ``group``."""
    wanted = {s.path for s in group}
    return np.array([s.path in wanted for s in scored], dtype=bool)


def _inconclusive_counts(labels: np.ndarray, inconclusive: np.ndarray | None) -> dict[str, int]:
    """How many reals and fakes have an ``inconclusive`` verdict; {} when nothing was judged."""
    if inconclusive is None:
        return {}
    return {"n_inconclusive_real": int(inconclusive[labels == 0].sum()),
            "n_inconclusive_fake": int(inconclusive[labels == 1].sum())}


def _measurable(n_real: int, target_fpr: float) -> bool:
    """Whether ``n_real`` reals can show a false-positive rate as fine as ``target_fpr`` (1/n_real <= it)."""
    return n_real * target_fpr >= 1 - 1e-9


def _mean_intervals(labels: np.ndarray, scores: np.ndarray, members: list[np.ndarray], threshold: float,
                    n_boot: int, seed: int) -> dict[str, list[float]]:
    """95% bootstrap intervals of the cross-generator mean AUC and accuracy.

    Files are resampled within strata of one label and one set of generators, so every replicate keeps
    each generator's numbers of reals and fakes, and reals shared by generators stay shared.
    """
    keys = np.stack([labels, *members], axis=1)
    stratum = np.unique(keys, axis=0, return_inverse=True)[1].ravel()
    strata = [np.flatnonzero(stratum == k) for k in range(int(stratum.max()) + 1)]
    rng = np.random.default_rng(seed)
    auc, acc = [], []
    for _ in range(n_boot):
        drawn = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in strata])
        sets = [drawn[mask[drawn]] for mask in members]
        auc.append(_nanmean(roc_auc(labels[d], scores[d]) for d in sets))
        acc.append(_nanmean(accuracy_at(labels[d], scores[d], threshold)["acc"] for d in sets))
    return {"auc_ci": list(percentile_interval(auc, 0.95)), "acc_ci": list(percentile_interval(acc, 0.95))}


def small_set_warning(results: dict[str, Any]) -> str | None:
    """One line on what a small evaluation set makes fragile (``evaluate_groups``' results), else None."""
    rows = [row for setting in results.values() for row in setting["generators"].values()]
    if not rows:
        return None
    n_real, n_fake = min(r["n_real"] for r in rows), min(r["n_fake"] for r in rows)
    parts = []
    if min(n_real, n_fake) < MIN_PER_CLASS:
        parts.append(f"small evaluation set: the smallest generator set has {n_real} reals and {n_fake} "
                     f"fakes (under {MIN_PER_CLASS} per class, accuracies and intervals are fragile)")
    needs = [f"TPR@{target:.0%}: {math.ceil(1 / target - 1e-9)}"
             for target in TPR_TARGETS.values() if not _measurable(n_real, target)]
    if needs:
        parts.append(f"a TPR at an FPR needs 1/FPR reals ({', '.join(needs)}), so it is n/a")
    return "; ".join(parts) or None


def _compose(align: Perturbation | None, pert: Perturbation) -> Transform | None:
    steps = [p for p in (align, pert) if p is not None and p.kind != "none"]
    if not steps:
        return None

    def run(rgb: np.ndarray) -> np.ndarray:
        for step in steps:
            rgb = step(rgb)
        return rgb

    return run
