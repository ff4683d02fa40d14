"""``apn scan`` on a Ray cluster: the engine's decode and ``Detector`` inside Ray Data actors.

The driver discovers the files (exactly as ``apn scan`` does, so unreadable paths still get a record) and
hands them to a pool of ``concurrency`` actors through ``map_batches``; each actor loads the detector once
and scores its batches of files with ``engine.score_candidates``, the same code as a local scan. Every
output row is one record as the JSON line ``apn scan --jsonl`` writes for that file, so the results equal
a local scan's, in a different order (``write_jsonl`` can sort them by path, as ``apn merge`` does).

On a GPU node give each actor a GPU (``num_gpus=1``, ``device="cuda"``): crops are then scored 16 per
forward pass by default (``batch_size`` sets it) and decoding stays on the node's CPUs; on CPU nodes run one
actor per core (``concurrency``), each with one decode thread and one forward pass at a time.

Example (any machine that can reach the cluster and read the files under the same paths)::

    import ray
    from apncli.cluster.ray_scan import scan_dataset, write_jsonl

    ray.init(address="auto")
    records = scan_dataset(["/archive/photos"], recursive=True, concurrency=32)
    write_jsonl(records, "results.jsonl", sort=True)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from apncli.cli.output import dumps
from apncli.data.discover import Candidate, discover

if TYPE_CHECKING:
    import ray.data

#: Files per ``map_batches`` call: large enough to keep an actor's decode thread and batches full,
#: small enough that a slow batch does not hold up the end of the run.
FILES_PER_BATCH = 32


def candidates_dataset(paths: Iterable[str | os.PathLike[str]], recursive: bool = False) -> ray.data.Dataset:
    """One row per candidate file: ``path`` (raw bytes, so any file name survives) and ``error``."""
    import ray.data

    rows = [{"path": os.fsencode(c.path), "error": c.error or ""}
            for c in discover(list(paths), recursive=recursive)]  # as typed: a URL is reported, not mangled
    return ray.data.from_items(rows)


class ScanActor:
    """A Ray Data actor: loads the detector once, then scores batches of files into JSON record lines."""

    def __init__(self, weights: str | None = None, device: str = "cpu", tiles: int | None = None,
                 batch_size: int | None = None, threshold: float | None = None, provenance: bool = True,
                 c2pa_trust_anchors: str | None = None, decode_workers: int = 1) -> None:
        from apncli.engine import Detector, ScanOptions

        self.detector = Detector.load(weights, device=device, tiles=tiles)
        self.anchors = c2pa_trust_anchors
        self.options = ScanOptions(batch_size=batch_size, threshold=threshold, workers=decode_workers,
                                   inference_threads=1, annotate=self._provenance if provenance else None)

    def _provenance(self, path: Path) -> dict[str, Any]:
        from apncli.provenance import read_provenance

        return {"provenance": read_provenance(path, c2pa_trust_anchors=self.anchors).to_dict()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from apncli.engine import score_candidates

        errors = batch.get("error", [""] * len(batch["path"]))
        candidates = [Candidate(_as_path(path), str(error) or None)
                      for path, error in zip(batch["path"], errors, strict=True)]
        records = [record.to_dict() for record in score_candidates(self.detector, candidates, self.options)]
        return {"path": np.array([r["path"] for r in records], dtype=object),
                "record": np.array([dumps(r) for r in records], dtype=object)}


def _as_path(value: Any) -> Path:
    """A path column holds raw bytes (from ``candidates_dataset``) or text (a user's own dataset)."""
    return Path(os.fsdecode(bytes(value) if isinstance(value, (bytes, np.bytes_)) else str(value)))


def scan_dataset(source: ray.data.Dataset | Iterable[str | os.PathLike[str]], *, recursive: bool = False,
                 concurrency: int = 1, files_per_batch: int = FILES_PER_BATCH, num_gpus: float = 0,
                 **actor_options: Any) -> ray.data.Dataset:
    """Records of every candidate under ``source``: columns ``path`` and ``record`` (a JSON line).

    ``source`` is a list of files and folders (discovered here, ``recursive`` as ``apn scan -r``) or a
    Ray dataset with a ``path`` column (each row one file). ``concurrency`` actors score in parallel, each
    with ``num_gpus`` GPUs; ``actor_options`` go to ``ScanActor`` (``weights``, ``device``, ``batch_size``,
    ``threshold``, ``provenance``, ``tiles``, ...). Lazy: nothing runs until the dataset is consumed.
    """
    import ray.data

    dataset = source if isinstance(source, ray.data.Dataset) else candidates_dataset(source, recursive)
    if num_gpus:
        actor_options.setdefault("device", "cuda")
    return dataset.map_batches(ScanActor, fn_constructor_kwargs=actor_options, batch_size=files_per_batch,
                               batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=concurrency),
                               num_cpus=1, num_gpus=num_gpus)


def write_jsonl(records: ray.data.Dataset, out: str | os.PathLike[str], sort: bool = False) -> int:
    """Write the ``record`` lines of ``scan_dataset`` to ``out`` as ``apn scan --jsonl`` would; the count.

    Streams in arrival order; with ``sort`` the lines are ordered by path (held in memory), which makes the
    file equal to ``apn merge`` of the same records.
    """
    rows = ((row["path"], row["record"]) for row in records.iter_rows())
    if sort:
        rows = iter(sorted(rows, key=lambda row: row[0]))
    count = 0
    with open(out, "w", encoding="utf-8") as handle:
        for _, line in rows:
            handle.write(line + "\n")
            count += 1
    return count


