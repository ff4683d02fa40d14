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
import time
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


@dataclass
class _Slot:
    """One candidate's place in the scan window, in input order: its decode, then its scoring group."""

    candidate: Candidate
    decode: futures.Future[DecodedFile]
    decoded: DecodedFile | None = None  # set once taken from ``decode`` (or timed out)
    scores: futures.Future[np.ndarray] | None = None  # its group's pass, once submitted
    offset: int = 0  # where its crops start in the group's scores


class _Scan:
    """One running scan: decode threads → scoring of whatever has decoded → records in input order.

    Files are scored as soon as they are decoded, not in input order: a 12-MP HEIC that takes a second to
    decode no longer holds back the files behind it while a core idles; only their records wait for it.
    Bounded at every stage, so memory does not grow with the folder: at most ``prefetch`` files are
    between submission and output (being decoded, waiting for a group of ``batch`` crops, being scored,
    or scored and waiting for an earlier file's record); ``streams`` passes run at once.
    """

    def __init__(self, detector: Detector, options: ScanOptions) -> None:
        self.detector, self.options = detector, options
        workers = max(1, options.workers)
        self.streams = inference_threads(detector, options)
        self.batch = options.batch_size or default_batch(detector)
        self.prefetch = 2 * workers + 2 * self.batch
        self.decode_pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apn-decode")
        self.score_pool = futures.ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="apn-score")
        self.window: deque[_Slot] = deque()
        self.ready: list[_Slot] = []  # decoded, not yet in a group
        self.head_wait: tuple[_Slot, float] | None = None  # the head slot's decode deadline

    def run(self, candidates: Iterable[Candidate]) -> Iterator[ScanRecord]:
        try:
            for candidate in candidates:
                decode = self.decode_pool.submit(_decode_for, self.detector, candidate, self.options.annotate)
                self.window.append(_Slot(candidate, decode))
                yield from self._advance(drain=False)
            yield from self._advance(drain=True)
        finally:
            # On Ctrl-C or an early stop, drop queued work instead of finishing it.
            self.decode_pool.shutdown(wait=False, cancel_futures=True)
            self.score_pool.shutdown(wait=False, cancel_futures=True)

    def _advance(self, drain: bool) -> Iterator[ScanRecord]:
        """Group what has decoded and write what is scored; wait while the window is full (or, with
        ``drain``, until it is empty)."""
        while True:
            self._take_decoded(flush=drain and all(s.decoded is not None for s in self.window))
            yield from self._emit()
            if not self.window or (not drain and len(self.window) < self.prefetch):
                return
            head = self.window[0]
            if head.decoded is not None and head.scores is None and head.decoded.crops:
                self._submit_group()  # the head waits in a part-filled group: score it now
                continue
            self._wait(head)

    def _take_decoded(self, flush: bool) -> None:
        """Move every finished decode (any position) into the current group; submit full groups."""
        for slot in self.window:
            if slot.decoded is None and slot.decode.done():
                self._add(slot, slot.decode.result())
        if flush:
            self._submit_group()

    def _add(self, slot: _Slot, decoded: DecodedFile) -> None:
        slot.decoded = decoded
        if not decoded.crops:  # an error: its record needs no scores
            return
        self.ready.append(slot)
        # Counting files too bounds a group of images with one crop each.
        if sum(len(s.decoded.crops) for s in self.ready) >= self.batch or len(self.ready) >= self.batch:
            self._submit_group()

    def _submit_group(self) -> None:
        if not self.ready:
            return
        items = [slot.decoded for slot in self.ready]
        future = self.score_pool.submit(_score_crops, self.detector, items, self.batch)
        offset = 0
        for slot in self.ready:
            slot.scores, slot.offset = future, offset
            offset += len(slot.decoded.crops)
        self.ready = []

    def _emit(self) -> Iterator[ScanRecord]:
        """Records of the oldest slots, as long as each is complete."""
        while self.window:
            slot = self.window[0]
            if slot.decoded is None or (slot.decoded.crops and not (slot.scores and slot.scores.done())):
                return
            self.window.popleft()
            item = slot.decoded
            scores = (slot.scores.result()[slot.offset:slot.offset + len(item.crops)]
                      if slot.scores is not None else np.empty(0))
            yield _record_for(self.detector, item, scores, self.options)

    def _wait(self, head: _Slot) -> None:
        """Block until a decode or a pass finishes; a head decode past ``decode_timeout_s`` becomes an
        error record and its thread is abandoned."""
        timeout = None
        if head.decoded is None:
            if self.head_wait is None or self.head_wait[0] is not head:
                self.head_wait = (head, time.monotonic() + self.options.decode_timeout_s)
            timeout = max(0.0, self.head_wait[1] - time.monotonic())
        pending = {s.decode for s in self.window if s.decoded is None}
        pending |= {s.scores for s in self.window if s.scores is not None and not s.scores.done()}
        done, _ = futures.wait(pending, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        if not done and head.decoded is None:
            seconds = self.options.decode_timeout_s
            self._add(head, DecodedFile(head.candidate, error=f"decode timed out after {seconds:g} s"))
            self._abandon_stuck_decoder()

    def _abandon_stuck_decoder(self) -> None:
        """A decode ran past the timeout: leave its thread behind (Python cannot kill a thread) and move
        the files queued behind it to a fresh pool, so one stuck file never starves the rest."""
        global _abandoned_decodes
        _abandoned_decodes += 1
        stuck, self.decode_pool = self.decode_pool, futures.ThreadPoolExecutor(
            max_workers=max(1, self.options.workers), thread_name_prefix="apn-decode")
        for slot in self.window:
            if slot.decoded is None and slot.decode.cancel():  # not started yet: decode it in the new pool
                slot.decode = self.decode_pool.submit(_decode_for, self.detector, slot.candidate,
                                                      self.options.annotate)
        stuck.shutdown(wait=False, cancel_futures=True)


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
