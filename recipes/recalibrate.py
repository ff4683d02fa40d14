"""Recalibrate a detector's decision rule under the current preprocessing; the weights stay as they are.

    .venv/bin/python recipes/recalibrate.py --reason "tile placement: most detailed positions first"

A threshold is only valid for the pipeline that produced the scores it was set on. When the way ``apn
scan`` turns an image into crops changes (here: which tiles of a large image are scored), the shipped
threshold and inconclusive band must be set again, on the same held-back *training* files as before (the
calibration half of the recipe's seeded hold-out), never on the development evaluation sets. This script
rebuilds that hold-out from the checkpoint's own training metadata, checks that it has the recorded
number of files (folders added to the data since then are left out with ``--exclude``), scores the
calibration half as ``apn scan`` does now, and writes the checkpoint again with the new threshold, band
and calibration report, and a ``metrics.recalibrations`` entry saying why, when and what changed. The
development-evaluation figures in the metadata are dropped (they were measured at the old threshold).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

from apncli import __version__  # noqa: E402
from apncli.data.layouts import training_samples  # noqa: E402
from apncli.engine import checkpoint  # noqa: E402
from apncli.engine.detector import Detector  # noqa: E402
from apncli.training.calibration import calibrate  # noqa: E402
from apncli.training.dataset import split_holdout  # noqa: E402
from apncli.training.evaluation import score_samples  # noqa: E402
from apncli.training.metrics import detection_report  # noqa: E402


def calibration_half(meta: dict[str, Any], data_root: Path, exclude: list[str]) -> list:
    """The checkpoint's calibration files, rebuilt from its training metadata (and checked against it)."""
    training = meta["training"]
    hyper = training["hyperparameters"]
    samples = training_samples(training["dataset"], data_root, training.get("train_on"))
    samples = [s for s in samples
               if not any(s.path.resolve().is_relative_to((data_root / e).resolve()) for e in exclude)]
    split = split_holdout(samples, hyper["val_fraction"], hyper["seed"])
    found = {"train": len(split.train), "val": len(split.val), "calibration": len(split.calib)}
    if found != training["files"]:
        raise SystemExit(f"the data under {data_root} gives {found}, the checkpoint was trained on "
                         f"{training['files']}: use --exclude for folders added since")
    return split.calib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "apn-lite-v1.safetensors")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "train")
    parser.add_argument("--exclude", action="append", default=["real/camera"],
                        help="data folders (relative to --data) added after the checkpoint was trained")
    parser.add_argument("--reason", required=True, help="why the rule is recalibrated (kept in the metadata)")
    parser.add_argument("--out", type=Path, help="where to write (default: replace --weights)")
    args = parser.parse_args(argv)

    state, meta = checkpoint.load_checkpoint(args.weights)
    calib = calibration_half(meta, args.data, args.exclude)
    detector = Detector.load(args.weights, device="cpu")
    scored = score_samples(lambda images: detector.predict(images, batch_size=8), calib)
    if scored.errors:
        raise SystemExit(f"{len(scored.errors)} calibration files could not be read: {scored.errors[:3]}")
    target = meta["metrics"]["calibration"]["target_fpr"]
    cal = calibrate(scored.labels, scored.scores, target)
    previous = {"threshold": meta["threshold"], "inconclusive_band": meta["inconclusive_band"]}
    meta["threshold"], meta["inconclusive_band"] = cal.threshold, list(cal.inconclusive_band)
    meta["metrics"]["calibration"] = {**cal.to_dict(),
                                      "report": detection_report(scored.labels, scored.scores, cal.threshold)}
    meta["metrics"].pop("development_eval", None)
    meta["metrics"].setdefault("recalibrations", []).append({
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "reason": args.reason,
        "apn_version": __version__,
        "previous": previous,
        "command": " ".join(["python", "recipes/recalibrate.py", *(sys.argv[1:] if argv is None else argv)]),
    })
    out = checkpoint.save_checkpoint(args.out or args.weights, state, meta)
    old_band, new_band = ([round(v, 4) for v in band] for band in (previous["inconclusive_band"],
                                                                    cal.inconclusive_band))
    print(f"{out}: threshold {previous['threshold']:.4f} -> {cal.threshold:.4f}, band {old_band} -> "
          f"{new_band} ({int((scored.labels == 0).sum())} reals, {int((scored.labels == 1).sum())} fakes); "
          f"sha256 {checkpoint.file_sha256(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
