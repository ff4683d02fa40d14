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
from apncli.errors import one_line
from apncli.training.metrics import detection_report

__all__ = ["ScoredSet", "evaluate_groups", "mean_report", "score_samples"]

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass
class ScoredSet:
    """Scores of the readable files of a sample list, plus one message per unreadable file."""

    samples: list[Sample] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    errors: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def _load(path: Path, transform: Transform | None) -> np.ndarray | str:
    try:
        rgb = decode_image(path).pixels
        return transform(rgb) if transform is not None else rgb
    except Exception as exc:  # one bad file becomes a reported skip, never the end of an evaluation
        return f"{path}: {one_line(exc) or type(exc).__name__}"


def score_samples(
    predict: Callable[[list[np.ndarray]], np.ndarray],
    samples: Sequence[Sample],
    transform: Transform | None = None,
    chunk: int = 64,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> ScoredSet:
    """Decode (in threads), transform and score ``samples`` in chunks; unreadable files are skipped."""
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
                parts.append(np.asarray(predict(images), dtype=np.float64))
            if on_progress is not None:
                on_progress(len(block))
    out.scores = np.concatenate(parts) if parts else np.zeros(0)
    return out


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
            vals = [r[key] for r in rows if isinstance(r.get(key), float) and not math.isnan(r[key])]
            out[key] = float(np.mean(vals)) if vals else float("nan")
    return out


def evaluate_groups(
    predict: Callable[[list[np.ndarray]], np.ndarray],
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
    """
    unique: dict[Path, Sample] = {}
    for g in groups.values():
        for s in (*g.reals, *g.fakes):
            unique.setdefault(s.path, s)
    files = sorted(unique.values())
    results: dict[str, Any] = {}
    skipped: dict[str, None] = {}  # insertion-ordered set of "path: reason", as the trainer keeps it
    for pert in perturbations:
        transform = _compose(align, pert)
        scored = score_samples(predict, files, transform, workers=workers, on_progress=on_progress)
        skipped.update(dict.fromkeys(scored.errors))
        by_path = {s.path: float(v) for s, v in zip(scored.samples, scored.scores, strict=True)}
        per_gen: dict[str, Any] = {}
        for name, g in groups.items():
            members = [s for s in (*g.reals, *g.fakes) if s.path in by_path]
            labels = np.array([s.label for s in members], dtype=np.int64)
            scores = np.array([by_path[s.path] for s in members], dtype=np.float64)
            per_gen[name] = detection_report(labels, scores, threshold, n_boot=n_boot, seed=seed)
        scored_files = [s for s in files if s.path in by_path]
        distinct = {"n_real": sum(s.label == 0 for s in scored_files),
                    "n_fake": sum(s.label == 1 for s in scored_files)}
        results[pert.name] = {"generators": per_gen, "mean": mean_report(per_gen.values(), distinct)}
    return {"results": results, "skipped": sorted(skipped)}


def _compose(align: Perturbation | None, pert: Perturbation) -> Transform | None:
    steps = [p for p in (align, pert) if p is not None and p.kind != "none"]
    if not steps:
        return None

    def run(rgb: np.ndarray) -> np.ndarray:
        for step in steps:
            rgb = step(rgb)
        return rgb

    return run
