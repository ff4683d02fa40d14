"""The decode floor: what `apn scan` does to each file minus inference — the throughput ceiling of a scan.

Discovers the files as `apn scan` does, then decodes and crops each one with the scan's own per-file
function (``apncli.engine.pipeline.decode_crops``) in a pool of ``--workers`` threads, with as many files
in flight as the scan keeps (``pipeline.read_ahead``), and prints one JSON line per file as it finishes, in
input order (so a parent measures it exactly like a scan's JSONL stream). No model is run; the checkpoint
is read only for its crop size, tile budget and default batch.

    python bench/decode_floor.py FOLDER --weights W.safetensors [--workers 2] [--batch-size N]
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import sys
from collections import deque
from pathlib import Path

import common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("paths", nargs="+", type=Path, help="Image files and/or folders.")
    parser.add_argument("--weights", required=True, help="Checkpoint whose crop plan to use.")
    parser.add_argument("--workers", type=int, default=2, help="Decoding threads (as `apn scan --workers`).")
    parser.add_argument("--tiles", type=int, help="Crops per large image (as `apn scan --tiles`).")
    parser.add_argument("--batch-size", type=int, help="As `apn scan --batch-size`: sets the read-ahead.")
    args = parser.parse_args(argv)

    from apncli.data.discover import discover
    from apncli.engine import Detector
    from apncli.engine.pipeline import decode_crops, default_batch, read_ahead
    from apncli.errors import ImageError

    detector = Detector.load(args.weights, device="cpu", tiles=args.tiles)

    def work(path: Path) -> dict[str, object]:
        try:
            decoded = decode_crops(detector, path)
        except ImageError as exc:
            return {"path": str(path), "error": str(exc)}
        return {"path": str(path), "crops": len(decoded.crops), "width": decoded.width,
                "height": decoded.height}

    in_flight: deque[futures.Future[dict[str, object]]] = deque()
    limit = read_ahead(args.workers, args.batch_size or default_batch(detector))
    with futures.ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for candidate in discover(args.paths, recursive=False):
            in_flight.append(pool.submit(work, candidate.path))
            if len(in_flight) >= limit:
                _emit(in_flight.popleft())
        while in_flight:
            _emit(in_flight.popleft())
    return 0


def _emit(future: futures.Future[dict[str, object]]) -> None:
    sys.stdout.write(json.dumps(future.result()) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
