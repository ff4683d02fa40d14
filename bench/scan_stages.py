"""Where a scan's time goes, file by file: decode, crops, forward, provenance, output, and the start-up.

Runs the per-file work of `apn scan` with the scan's own functions, one file at a time on one thread (a
scan runs one such thread per core), and prints one JSON line per file: its megapixels, its format and
the process CPU milliseconds of each stage (all threads: a decoder's own worker threads, such as
libheif's for HEIC, count too; nothing else runs meanwhile). The first line is ``{"startup": ...}``:
seconds to import the engine (and torch) and to load the checkpoint. No stage overlaps another here, so
the columns add up to the CPU a scan spends per file.

- decode: ``decode_image`` alone (the whole image, as a plain decode would give it);
- crops: what ``pipeline.decode_crops`` (the scan's decode step) costs beyond that decode: placing the
  tiles, measuring their signal, copying them out (negative when the scan decodes less than the whole
  image);
- forward: ``Detector.predict_crops`` at the scan's CPU batch (to-tensor included);
- provenance: ``read_provenance`` (C2PA, IPTC, EXIF, PNG text), as ``--provenance`` (the default) does;
- output: the JSONL record written to /dev/null.

    python bench/scan_stages.py FOLDER --weights W.safetensors [--tiles N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("folder", type=Path, help="Folder of images (not recursive).")
    parser.add_argument("--weights", required=True, help="Checkpoint to score with.")
    parser.add_argument("--tiles", type=int, help="Crops per large image (as `apn scan --tiles`).")
    parser.add_argument("--batch-size", type=int, help="Crops per forward pass (default: the scan's on CPU).")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import torch

    from apncli.cli.output import JsonlWriter
    from apncli.data.images import decode_image
    from apncli.engine import Detector
    from apncli.engine.pipeline import ScanRecord, decode_crops, default_batch
    from apncli.provenance import read_provenance

    imported = time.perf_counter()
    detector = Detector.load(args.weights, device="cpu", tiles=args.tiles)
    loaded = time.perf_counter()
    _emit({"startup": {"imports_s": imported - started, "model_load_s": loaded - imported}})
    torch.set_num_threads(1)  # as the scan runs each forward pass
    batch = args.batch_size or default_batch(detector)
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        writer = JsonlWriter(devnull)
        files = common.image_files(args.folder)
        for path in {p.suffix.lower(): p for p in reversed(files)}.values():  # untimed: one-off set-up of
            decode_image(path)                                                  # each decoder and kernel
            detector.predict_crops(decode_crops(detector, path).crops, batch)
            read_provenance(path)
        for path in files:
            ms: dict[str, float] = {}
            with _stage(ms, "decode"):
                image = decode_image(path)
            with _stage(ms, "decode_and_crops"):
                decoded = decode_crops(detector, path)
            with _stage(ms, "forward"):
                scores = detector.predict_crops(decoded.crops, batch)
            with _stage(ms, "provenance"):
                provenance = read_provenance(path).to_dict()
            with _stage(ms, "output"):
                record = ScanRecord(path=str(path), p_ai=float(scores.mean()), model=detector.info.to_dict(),
                                    threshold=detector.info.threshold, width=decoded.width,
                                    height=decoded.height, crops=len(decoded.crops),
                                    extra={"provenance": provenance})
                writer.write(record.to_dict())
            ms["crops"] = ms.pop("decode_and_crops") - ms["decode"]
            _emit({"path": str(path), "format": image.format, "megapixels": image.width * image.height / 1e6,
                   "crops": len(decoded.crops), "ms": ms})
    return 0


@contextlib.contextmanager
def _stage(ms: dict[str, float], name: str) -> Iterator[None]:
    """Adds the process CPU milliseconds of the block to ``ms[name]`` (thread time would miss the decoders'
    worker threads: 12-MP HEIC files measured 148 ms of thread time for ~900 ms of decoding)."""
    start = time.process_time()
    yield
    ms[name] = 1000 * (time.process_time() - start)


def _emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
