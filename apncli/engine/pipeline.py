"""The scan hot path: discover → decode in worker threads → batch crops → score → records, in input order.

Decoding (Pillow/OpenCV release the GIL) overlaps with inference, the queue of images in flight is
bounded so memory stays flat on folders of any size, and each worker hands back only the crops, never the
full decoded image. A file that cannot be read becomes a record with an ``error``; it never stops the run.
"""

from __future__ import annotations

import concurrent.futures as futures
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from apncli.data.discover import Candidate, discover, display_path
from apncli.data.images import decode_image
from apncli.engine.detector import Detector
from apncli.errors import ImageError

#: A decode that takes longer than this is reported as an error instead of stalling the scan.
DEFAULT_DECODE_TIMEOUT_S = 60.0


@dataclass
class ScanRecord:
    """One line of scan output: exactly one per candidate file, success or not."""

    path: str
    p_ai: float | None = None
    verdict: str | None = None
    threshold: float | None = None
    model: dict[str, Any] | None = None
    width: int | None = None
    height: int | None = None
    crops: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: Path | None = field(default=None, repr=False)  # the file itself (``path`` is for display)

    def to_dict(self) -> dict[str, Any]:
        record = {
            "path": self.path,
            "p_ai": None if self.p_ai is None else round(self.p_ai, 6),
            "verdict": self.verdict,
            "threshold": self.threshold,
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "crops": self.crops,
            "error": self.error,
        }
        record.update(self.extra)
        return record


@dataclass
class _Decoded:
    """What a decode worker returns: crops and size, or an error message."""

    candidate: Candidate
    crops: list[np.ndarray] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScanOptions:
    """Knobs of one scan; the defaults fit a laptop."""

    recursive: bool = False
    batch_size: int = 16
    workers: int = 2
    threshold: float | None = None
    decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S
    skip: Callable[[str], bool] | None = None  # e.g. files already in a resumed output
    annotate: Callable[[Path], dict[str, Any]] | None = None  # extra per-file fields (provenance)


def scan(detector: Detector, paths: Iterable[str | Path], options: ScanOptions) -> Iterator[ScanRecord]:
    """Yield one record per candidate file, in discovery order, while decoding ahead in threads."""
    candidates = (c for c in discover([Path(p) for p in paths], recursive=options.recursive)
                  if options.skip is None or not options.skip(display_path(c.path)))
    prefetch = max(2, options.workers) * 2 + options.batch_size
    pool = futures.ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="apn-decode")
    pending: deque[tuple[Candidate, futures.Future[_Decoded]]] = deque()
    ready: list[_Decoded] = []
    try:
        for candidate in candidates:
            pending.append((candidate, pool.submit(_decode_for, detector, candidate, options.annotate)))
            while len(pending) >= prefetch:
                ready.append(_result(*pending.popleft(), options.decode_timeout_s))
                if _crop_count(ready) >= options.batch_size:
                    yield from _score(detector, ready, options)
                    ready = []
        while pending:
            ready.append(_result(*pending.popleft(), options.decode_timeout_s))
            if _crop_count(ready) >= options.batch_size:
                yield from _score(detector, ready, options)
                ready = []
        yield from _score(detector, ready, options)
    finally:
        # On Ctrl-C or an early stop, drop queued decodes instead of finishing them.
        pool.shutdown(wait=False, cancel_futures=True)


def _decode_for(detector: Detector, candidate: Candidate,
                annotate: Callable[[Path], dict[str, Any]] | None) -> _Decoded:
    """Worker: decode one file and cut its crops, so the full image is freed inside the worker."""
    if candidate.error:
        return _Decoded(candidate, error=candidate.error)
    decoded = _decode_pixels(detector, candidate)
    if annotate is not None:
        decoded.extra = _safe_annotate(annotate, candidate.path)
    return decoded


def _safe_annotate(annotate: Callable[[Path], dict[str, Any]], path: Path) -> dict[str, Any]:
    """Metadata readers must never cost the pixel verdict; a failure is reported, not raised."""
    try:
        return annotate(path)
    except Exception as exc:
        return {"provenance": {"summary": "none", "error": _one_line(f"{type(exc).__name__}: {exc}")}}


def _decode_pixels(detector: Detector, candidate: Candidate) -> _Decoded:
    try:
        image = decode_image(candidate.path)
        return _Decoded(candidate, crops=detector.crops_of(image.pixels), width=image.width,
                        height=image.height)
    except ImageError as exc:
        return _Decoded(candidate, error=_one_line(exc))
    except MemoryError:
        return _Decoded(candidate, error="out of memory while decoding")
    except Exception as exc:  # a decoder bug must cost one record, never the run
        return _Decoded(candidate, error=_one_line(f"unexpected {type(exc).__name__}: {exc}"))


def _result(candidate: Candidate, future: futures.Future[_Decoded], timeout_s: float) -> _Decoded:
    """Wait for one decode; a pathological file becomes an error record after ``timeout_s``."""
    try:
        return future.result(timeout=timeout_s)
    except futures.TimeoutError:
        future.cancel()
        return _Decoded(candidate, error=f"decode timed out after {timeout_s:g} s")


def _crop_count(decoded: list[_Decoded]) -> int:
    return sum(len(item.crops) for item in decoded)


def _score(detector: Detector, decoded: list[_Decoded], options: ScanOptions) -> Iterator[ScanRecord]:
    """Score all crops of a group of images in one batch, then emit their records in order."""
    flat = [crop for item in decoded for crop in item.crops]
    scores = detector.predict_crops(flat) if flat else np.zeros(0)
    start = 0
    for item in decoded:
        record = _record_for(detector, item, scores[start:start + len(item.crops)], options)
        start += len(item.crops)
        yield record


def _record_for(detector: Detector, item: _Decoded, scores: np.ndarray, options: ScanOptions) -> ScanRecord:
    threshold = detector.info.threshold if options.threshold is None else options.threshold
    record = ScanRecord(path=display_path(item.candidate.path), threshold=threshold,
                        model=detector.info.to_dict(), width=item.width, height=item.height,
                        crops=len(item.crops), error=item.error, source=item.candidate.path)
    if item.error is None and len(scores):
        record.p_ai = float(scores.mean())
        record.verdict = detector.verdict(record.p_ai, options.threshold)
    record.extra.update(item.extra)
    return record


def _one_line(message: object) -> str:
    return " ".join(str(message).split())
