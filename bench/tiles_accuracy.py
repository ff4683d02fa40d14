"""Tiles per image against accuracy and time: ROC-AUC on the development sets with 1, 2, 4 and 8 tiles.

Scores every image of each set under ``--eval`` (default ``../shared/data/eval``: folders holding
``0_real/`` and ``1_fake/``) the way `apn scan` does, once per tile budget: the scan's decode step
(``pipeline.decode_crops``) places the largest budget's tiles, and a budget of k scores their first k
(a smaller budget is always a prefix of a larger one, so these are exactly the tiles `apn scan --tiles k`
scores). Prints, per set and budget: ROC-AUC with a 95 % bootstrap interval, the mean tiles actually
scored (small images hold fewer), and CPU ms per image on one thread (decode and tile placement + the
forward passes of those tiles). Run it with the trained detector to choose the default tile count:

    python bench/tiles_accuracy.py --weights weights/apn-v2.safetensors [--tiles 1,2,4,8] [--eval ROOT]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import common


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    import numpy as np
    import torch

    from apncli.engine import Detector
    from apncli.engine.pipeline import decode_crops, default_batch
    from apncli.training.metrics import bootstrap_ci, roc_auc

    load_before = os.getloadavg()[0]
    weights, note = common.checkpoint_for(args.weights, args.config)
    detector = Detector.load(weights, device="cpu", tiles=max(args.tiles))
    torch.set_num_threads(1)  # as a scan runs each forward pass
    rows = []
    for name, samples in eval_sets(args.eval):
        labels = np.array([label for _, label in samples])
        scores = {k: [] for k in args.tiles}
        cpu_ms = {k: [] for k in args.tiles}
        used = {k: [] for k in args.tiles}
        for path, _ in samples:
            start = time.thread_time()
            crops = decode_crops(detector, path).crops
            decode_ms = 1000 * (time.thread_time() - start)
            for k in args.tiles:
                start = time.thread_time()
                scores[k].append(float(detector.predict_crops(crops[:k], default_batch(detector)).mean()))
                cpu_ms[k].append(decode_ms + 1000 * (time.thread_time() - start))
                used[k].append(min(k, len(crops)))
        for k in args.tiles:
            p = np.array(scores[k])
            low, high = bootstrap_ci(labels, p, roc_auc)
            rows.append({"set": name, "tiles": k, "images": len(samples), "auc": roc_auc(labels, p),
                         "auc_ci": [low, high], "tiles_scored": float(np.mean(used[k])),
                         "cpu_ms_per_image": float(np.mean(cpu_ms[k]))})
    results = {"machine": common.machine_info(), "model": note, "rows": rows,
               "load_note": common.load_note(load_before)}
    _print(results)
    common.write_results(args.out, results)
    return results


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("--weights", help="Checkpoint to score with (default: the registry's default "
                                          "detector when it is a --config network, else random weights).")
    parser.add_argument("--config", default="pretrained-lite0", help="Network when no --weights.")
    parser.add_argument("--eval", type=Path, default=common.SHARED_DATA / "eval",
                        help="Folder of evaluation sets, each with 0_real/ and 1_fake/.")
    parser.add_argument("--tiles", default="1,2,4,8", help="Tile budgets to compare (default 1,2,4,8).")
    parser.add_argument("--out", type=Path, help="Also write the results as JSON to this file.")
    args = parser.parse_args(argv)
    args.tiles = sorted({int(k) for k in args.tiles.split(",")})
    if not args.eval.is_dir():
        raise SystemExit(f"no evaluation sets at {args.eval} (pass --eval ROOT)")
    return args


def eval_sets(root: Path) -> list[tuple[str, list[tuple[Path, int]]]]:
    """(set name, [(file, label)]) for every folder of ``root`` holding ``0_real/`` and ``1_fake/``."""
    from apncli.data.images import IMAGE_EXTENSIONS

    sets = []
    for folder in sorted(p for p in root.iterdir() if (p / "0_real").is_dir() and (p / "1_fake").is_dir()):
        samples = [(path, label) for label, sub in ((0, "0_real"), (1, "1_fake"))
                   for path in sorted((folder / sub).rglob("*")) if path.suffix.lower() in IMAGE_EXTENSIONS]
        sets.append((folder.name, samples))
    if not sets:
        raise SystemExit(f"no folder with 0_real/ and 1_fake/ under {root}")
    return sets


def _print(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(common.table(
        f"Tiles per image: accuracy against time — {m['cpu']}, {m['date']}",
        ["set", "tiles (budget)", "images", "ROC-AUC", "95 % CI", "tiles scored (mean)", "CPU ms / image"],
        [(r["set"], r["tiles"], r["images"], r["auc"], f"[{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]",
          r["tiles_scored"], r["cpu_ms_per_image"]) for r in results["rows"]]))
    print(f"model: {results['model']}; one thread; CPU ms = decode and tile placement + forward passes")
    print(results["load_note"])


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
