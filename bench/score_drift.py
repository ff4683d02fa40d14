"""Score drift of a change to the forward pass or the decode step: scores of every development image, written
by one checkout and compared by another (largest |Δp|, verdict changes) against the tolerance 0.01.

Each image is scored as `apn scan` scores it (``pipeline.decode_crops``, then the detector's crops in one
pass of up to 16, mean probability, verdict with the low-signal rule). Sets: every folder under ``--eval``
(default ``../shared/data/eval``) holding ``0_real/`` and ``1_fake/``.

    git checkout OLD && python bench/score_drift.py --weights apn-v2 --write /tmp/scores-old.json
    git checkout NEW && python bench/score_drift.py --weights apn-v2 --compare /tmp/scores-old.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import common
from tiles_accuracy import eval_sets

TOLERANCE = 0.01
BATCH = 16


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import numpy as np
    import torch

    from apncli.engine import Detector
    from apncli.engine.pipeline import decode_crops

    detector = Detector.load(args.weights, device="cpu")
    torch.set_num_threads(1)  # as a scan runs each forward pass
    scores: dict[str, dict[str, Any]] = {}
    for name, samples in eval_sets(args.eval):
        for path, _ in samples:
            decoded = decode_crops(detector, path)
            p = float(detector.predict_crops(decoded.crops, BATCH).mean())
            verdict = detector.verdict(p, signal=decoded.signal)
            scores[str(path)] = {"set": name, "p_ai": p, "verdict": verdict}
    if args.write:
        common.write_results(args.write, {"model": detector.describe(), "scores": scores})
        return 0
    reference = json.loads(args.compare.read_text(encoding="utf-8"))["scores"]
    failed = False
    rows = []
    for name in sorted({s["set"] for s in scores.values()}):
        paths = [p for p, s in scores.items() if s["set"] == name and p in reference]
        drift = np.array([abs(scores[p]["p_ai"] - reference[p]["p_ai"]) for p in paths])
        flips = sum(scores[p]["verdict"] != reference[p]["verdict"] for p in paths)
        failed |= bool(drift.max() > TOLERANCE or flips)
        rows.append((name, len(paths), f"{drift.max():.1e}", f"{np.median(drift):.1e}", flips))
    print(common.table(f"Score drift against {args.compare.name} (tolerance |Δp| ≤ {TOLERANCE})",
                       ["set", "images", "max |Δp|", "median |Δp|", "verdict changes"], rows))
    return 1 if failed else 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("--weights", default="apn-v2", help="Checkpoint: registered name or file (apn-v2).")
    parser.add_argument("--eval", type=Path, default=common.SHARED_DATA / "eval",
                        help="Folder of evaluation sets, each with 0_real/ and 1_fake/.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", type=Path, help="Write this checkout's scores to this JSON file.")
    what.add_argument("--compare", type=Path, help="Compare this checkout's scores with this JSON file.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
