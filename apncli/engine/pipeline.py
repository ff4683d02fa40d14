"""The scan hot path: discover → decode in worker threads → batch crops → score → records, in input order.

Decoding (Pillow/OpenCV release the GIL) overlaps with inference, and on CPU several single-threaded
forward passes run at once, one per core; every queue between the stages is bounded so memory stays flat
on folders of any size, and each worker hands back copies of its crops, never the full decoded image. A
file that cannot be read becomes a record with an ``error``; it never stops the run. The choices here are
measured with ``bench/`` (see docs/performance.md).
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apncli.data.discover import Candidate, Shard, discover
from apncli.data.images import DecodedWindows, decode_windows
from apncli.data.signal import Signal
from apncli.engine.detector import Detector
from apncli.engine.device import available_cpus
from apncli.errors import ImageError, one_line

#: A decode that takes longer than this is reported as an error instead of stalling the scan.
DEFAULT_DECODE_TIMEOUT_S = 60.0

_abandoned_decodes = 0


def abandoned_decodes() -> int:
    """Decodes left running past ``--decode-timeout`` in this process (their threads cannot be stopped).

    A command-line run that finished its output while this is non-zero should end the process at once
    (``os._exit``) rather than wait for them at interpreter exit.
    """
    return _abandoned_decodes


#: Fields about the analysed pixels; null on records of files that could not be decoded.
PIXEL_FIELDS = ("analysed_fraction", "padded", "textured_fraction", "low_signal", "has_alpha",
                "transparent_fraction")


@dataclass
class ScanRecord:
    """One line of scan output: exactly one per candidate file, success or not; every record has the
    same keys (``provenance`` aside, absent with ``--no-provenance``)."""

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
            **dict.fromkeys(PIXEL_FIELDS),
        }
        record.update(self.extra)
        return record


@dataclass
class DecodedFile:
    """What a decode worker returns: crops, size, signal and extra record fields, or an error message."""

    candidate: Candidate
    crops: list[np.ndarray] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    signal: Signal | None = None


@dataclass
class ScanOptions:
    """Knobs of one scan; the defaults fit a laptop."""

    recursive: bool = False
    batch_size: int | None = None  # crops per forward pass; None: what is fastest on the device
    workers: int = 2  # decoding threads
    threshold: float | None = None
    decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S
    skip: Callable[[Path], bool] | None = None  # e.g. files already in a resumed output, or apn's figures
    annotate: Callable[[Path], dict[str, Any]] | None = None  # extra per-file fields (provenance)
    inference_threads: int | None = None  # forward passes run at once; None: one per usable core on CPU
    shard: Shard | None = None  # scan only this part of the candidates (``--shard K/N``)

    def wants(self, path: Path) -> bool:
        """Whether a discovered candidate is scanned: in this shard, and not skipped."""
        return (self.shard is None or self.shard.holds(path)) and (self.skip is None or not self.skip(path))


#: Pixels per forward pass on CPU when the caller does not say: 16 crops of 128 px, ~5 of 224 px. Fewer,
#: larger passes mean fewer Python-level operators per crop, and the concurrent single-threaded passes of a
#: scan contend for the GIL at each one: with `pretrained-lite0` (128 px) 16 crops per pass took 0.82x the
#: CPU and 0.82x the wall time of 4 on 192 web-sized files (AMD EPYC, 2 cores, 3 rounds; peak RSS +200 MB).
#: At 224 px (``lite``, ``paper``) the budget gives 5 crops, near the 4 measured fastest there (Intel), where
#: 16 crops cost 20-25 % more CPU per crop (their activations fall out of cache) and ~3x the memory.
CPU_BATCH_PIXELS = 16 * 128 * 128
MAX_CPU_BATCH = 16
ACCELERATOR_BATCH = 16


def scan(detector: Detector, paths: Iterable[str | Path], options: ScanOptions) -> Iterator[ScanRecord]:
    """Yield one record per candidate file, in discovery order, decoding ahead and scoring in parallel."""
    candidates = (c for c in discover(list(paths), recursive=options.recursive) if options.wants(c.path))
    yield from score_candidates(detector, candidates, options)


def score_candidates(detector: Detector, candidates: Iterable[Candidate],
                     options: ScanOptions) -> Iterator[ScanRecord]:
    """One record per already discovered candidate, in order: the part of ``scan`` after discovery.

    For callers that discover (or distribute) files themselves, e.g. the Ray Data path; ``recursive``,
    ``skip`` and ``shard`` of ``options`` are not applied here.
    """
    with _single_threaded_ops(detector.device):
        yield from _Scan(detector, options).run(candidates)


class _Scan:
    """One running scan: decode threads → bounded queue → concurrent scoring → records in input order.

    Bounded at every stage, so memory does not grow with the folder: at most ``prefetch`` files are
    being decoded, fewer than ``batch`` decoded images wait for a group, and at most ``streams + 1``
    groups are being scored (``streams`` running, one queued so no scoring thread idles).
    """

    def __init__(self, detector: Detector, options: ScanOptions) -> None:
        self.detector, self.options = detector, options
        workers = max(1, options.workers)
        self.streams = inference_threads(detector, options)
        self.batch = options.batch_size or default_batch(detector)
        self.prefetch = read_ahead(workers, self.batch)
        self.decode_pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apn-decode")
        self.score_pool = futures.ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="apn-score")
        self.decoding: deque[tuple[Candidate, futures.Future[DecodedFile]]] = deque()
        self.ready: list[DecodedFile] = []
        self.scoring: deque[tuple[list[DecodedFile], futures.Future[np.ndarray]]] = deque()

    def run(self, candidates: Iterable[Candidate]) -> Iterator[ScanRecord]:
        try:
            for candidate in candidates:
                future = self.decode_pool.submit(_decode_for, self.detector, candidate, self.options.annotate)
                self.decoding.append((candidate, future))
                # Take finished decodes at once, so scoring starts as soon as a batch is there.
                while len(self.decoding) >= self.prefetch or (self.decoding and self.decoding[0][1].done()):
                    self._take_decoded()
                    yield from self._emit(self.streams)
            while self.decoding:
                self._take_decoded()
            self._submit_group()
            yield from self._emit(0)
        finally:
            # On Ctrl-C or an early stop, drop queued work instead of finishing it.
            self.decode_pool.shutdown(wait=False, cancel_futures=True)
            self.score_pool.shutdown(wait=False, cancel_futures=True)

    def _take_decoded(self) -> None:
        candidate, future = self.decoding.popleft()
        try:
            decoded = future.result(timeout=self.options.decode_timeout_s)
        except futures.TimeoutError:
            timeout = self.options.decode_timeout_s
            decoded = DecodedFile(candidate, error=f"decode timed out after {timeout:g} s")
            self._abandon_stuck_decoder()
        self.ready.append(decoded)
        # Counting files too flushes a long run of unreadable files, which have no crops.
        if _crop_count(self.ready) >= self.batch or len(self.ready) >= self.batch:
            self._submit_group()

    def _abandon_stuck_decoder(self) -> None:
        """A decode ran past the timeout: leave its thread behind (Python cannot kill a thread) and move
        the files queued behind it to a fresh pool, so one stuck file never starves the rest."""
        global _abandoned_decodes
        _abandoned_decodes += 1
        stuck, self.decode_pool = self.decode_pool, futures.ThreadPoolExecutor(
            max_workers=max(1, self.options.workers), thread_name_prefix="apn-decode")
        for index, (candidate, future) in enumerate(self.decoding):
            if future.cancel():  # not started yet: decode it in the new pool instead
                self.decoding[index] = (candidate, self.decode_pool.submit(
                    _decode_for, self.detector, candidate, self.options.annotate))
        stuck.shutdown(wait=False, cancel_futures=True)

    def _submit_group(self) -> None:
        if self.ready:
            future = self.score_pool.submit(_score_crops, self.detector, self.ready, self.batch)
            self.scoring.append((self.ready, future))
            self.ready = []

    def _emit(self, keep: int) -> Iterator[ScanRecord]:
        """Records of the oldest groups, waiting for their scores, until ``keep`` groups are left."""
        while len(self.scoring) > keep:
            decoded, scored = self.scoring.popleft()
            scores = scored.result()
            start = 0
            for item in decoded:
                yield _record_for(self.detector, item, scores[start:start + len(item.crops)], self.options)
                start += len(item.crops)


def read_ahead(workers: int, batch: int) -> int:
    """Files a scan keeps in flight ahead of its output: two per decoding thread (none idles while the
    oldest file, which the output waits for, still decodes) plus one group of ``batch`` for the next pass."""
    return 2 * max(1, workers) + batch


def default_batch(detector: Detector) -> int:
    """Crops per forward pass when not given: on CPU the pixel budget ``CPU_BATCH_PIXELS`` in 4 to 16 crops
    (more would hold records back: a group is written when its pass ends), 16 on accelerators."""
    if detector.device.type != "cpu":
        return ACCELERATOR_BATCH
    return min(MAX_CPU_BATCH, max(4, CPU_BATCH_PIXELS // detector.crop_size**2))


def inference_threads(detector: Detector, options: ScanOptions) -> int:
    """Concurrent forward passes: one per usable core on CPU, one on an accelerator (it queues anyway)."""
    if options.inference_threads is not None:
        return max(1, options.inference_threads)
    if detector.device.type != "cpu":
        return 1
    return max(1, min(available_cpus(), MAX_INFERENCE_THREADS))


#: Each CPU inference thread holds one batch of activations (at 4 crops: ~150 MB for ``lite``, ~500 MB for
#: ``paper``), so many-core machines get at most this many concurrent passes.
MAX_INFERENCE_THREADS = 8


@contextlib.contextmanager
def _single_threaded_ops(device: torch.device) -> Iterator[None]:
    """On CPU, run each forward pass on one core and get parallelism from concurrent passes instead.

    torch's intra-op OpenMP threads busy-wait at every operator barrier; next to the decode threads (or
    any other busy process) a preempted thread stalls the whole pass: two intra-op threads measured 2–3×
    slower than one on a loaded 2-core machine. Independent single-threaded passes never wait on
    each other. The previous setting is restored when the scan ends.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _decode_for(detector: Detector, candidate: Candidate,
                annotate: Callable[[Path], dict[str, Any]] | None) -> DecodedFile:
    """Worker: decode one file and cut its crops, so the full image is freed inside the worker."""
    if candidate.error:
        return DecodedFile(candidate, error=candidate.error)
    decoded = _decode_pixels(detector, candidate)
    if annotate is not None:
        decoded.extra.update(_safe_annotate(annotate, candidate.path))
    return decoded


def _safe_annotate(annotate: Callable[[Path], dict[str, Any]], path: Path) -> dict[str, Any]:
    """Metadata readers must never cost the pixel verdict; a failure is reported, not raised."""
    try:
        return annotate(path)
    except Exception as exc:
        return {"provenance": {"summary": "none", "error": one_line(f"{type(exc).__name__}: {exc}")}}


def decode_crops(detector: Detector, path: Path) -> DecodedFile:
    """Decode one file, cut the detector's crops and measure their signal; raises ``ImageError``.

    Only the crops are converted to NumPy where the format allows it (``decode_windows``: 5-7 ms and
    36 MB per 12 MP saved); the crops are copies, never views, which would keep the whole decoded image
    alive in the queue until its batch is scored. This is all a scan does per file before inference, so
    the decode-floor benchmark calls exactly this function. ``extra`` holds the alpha record fields.
    """
    image = decode_windows(path, detector.windows())
    if isinstance(image, DecodedWindows):
        crops, signal = image.windows, detector.windows_signal(image)
    else:
        views, signal = detector.prepare(image.pixels)
        crops = [np.array(crop) for crop in views]
    alpha = {"has_alpha": image.has_alpha, "transparent_fraction": round(image.transparent_fraction, 4)}
    return DecodedFile(Candidate(path), crops=crops, width=image.width, height=image.height, extra=alpha,
                       signal=signal)


def _decode_pixels(detector: Detector, candidate: Candidate) -> DecodedFile:
    try:
        decoded = decode_crops(detector, candidate.path)
        decoded.candidate = candidate
        return decoded
    except ImageError as exc:
        return DecodedFile(candidate, error=one_line(exc))
    except MemoryError:
        return DecodedFile(candidate, error="out of memory while decoding")
    except Exception as exc:  # a decoder bug must cost one record, never the run
        return DecodedFile(candidate, error=one_line(f"unexpected {type(exc).__name__}: {exc}"))


def _crop_count(decoded: list[DecodedFile]) -> int:
    return sum(len(item.crops) for item in decoded)


def _score_crops(detector: Detector, decoded: list[DecodedFile], batch: int) -> np.ndarray:
    """Scoring thread: all crops of a group of images, ``batch`` crops per forward pass."""
    return detector.predict_crops([crop for item in decoded for crop in item.crops], batch)


def _record_for(detector: Detector, item: DecodedFile, scores: np.ndarray,
                options: ScanOptions) -> ScanRecord:
    threshold = detector.info.threshold if options.threshold is None else options.threshold
    record = ScanRecord(path=item.candidate.display, threshold=threshold,
                        model=detector.info.to_dict(), width=item.width, height=item.height,
                        crops=len(item.crops), error=item.error, source=item.candidate.path)
    if item.error is None and len(scores):
        record.p_ai = float(scores.mean())
        record.verdict = detector.verdict(record.p_ai, options.threshold, item.signal)
    if item.signal is not None:
        record.extra.update(item.signal.to_record())
    record.extra.update(item.extra)
    return record
