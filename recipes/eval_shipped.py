"""What users see from a detector on the development evaluation sets, as ``apn scan`` reports it.

    .venv/bin/python recipes/eval_shipped.py                      # the shipped default detector
    .venv/bin/python recipes/eval_shipped.py --weights runs/x/model.safetensors --json out.json

Each set of ``../shared/data/eval`` (``0_real/``, ``1_fake/<generator>/``) is scanned through the product's
own scan pipeline, as-is and with both classes re-encoded as JPEG q85 (how images are shared). Reported per
set and condition: ROC-AUC with a 1000-sample bootstrap 95% interval, the share of fakes and of reals at
p >= threshold, and the verdicts users see (``ai-generated`` / ``inconclusive`` / ``real``, which include
the inconclusive band and the low-signal rule). Development evaluation only: never used to train, pick
epochs or set thresholds.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from apncli.engine import Detector, ScanOptions, scan
from apncli.training.metrics import bootstrap_ci, roc_auc

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ("as-is", "jpeg85")


def reencoded(folder: Path, out: Path) -> Path:
    """A copy of ``folder`` with every image re-encoded as JPEG q85 (same relative paths, .jpg)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        target = (out / path.relative_to(folder)).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").save(buffer, "JPEG", quality=85)
        target.write_bytes(buffer.getvalue())
    return out


def summarise(records: list[dict[str, Any]], root: Path, threshold: float) -> dict[str, Any]:
    """AUC with its interval, rates at the threshold and the verdict counts of one scanned set."""
    scored = [r for r in records if r["p_ai"] is not None]
    labels = np.array([int(Path(r["path"]).relative_to(root).parts[0] == "1_fake") for r in scored])
    scores = np.array([r["p_ai"] for r in scored])
    low, high = bootstrap_ci(labels, scores, roc_auc, n_boot=1000, seed=0)
    verdicts = {name: dict(Counter(r["verdict"] for r, y in zip(scored, labels, strict=True) if y == label))
                for name, label in (("reals", 0), ("fakes", 1))}
    return {"n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
            "errors": len(records) - len(scored), "auc": roc_auc(labels, scores), "auc_ci95": [low, high],
            "tpr_at_threshold": float((scores[labels == 1] >= threshold).mean()),
            "fpr_at_threshold": float((scores[labels == 0] >= threshold).mean()), "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped default detector)")
    parser.add_argument("--eval", type=Path, default=REPO.parent / "shared" / "data" / "eval")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    detector = Detector.load(args.weights, device="cpu")
    results: dict[str, Any] = {"model": detector.describe()}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in sorted(p for p in args.eval.iterdir() if (p / "1_fake").is_dir()):
            for condition in CONDITIONS:
                root = folder if condition == "as-is" else reencoded(folder, Path(tmp) / folder.name)
                records = [r.to_dict() for r in scan(detector, [root], ScanOptions(recursive=True))]
                summary = summarise(records, root, detector.info.threshold)
                results[f"{folder.name}/{condition}"] = summary
                (low, high), verdicts = summary["auc_ci95"], summary["verdicts"]
                print(f"{folder.name:17s} {condition:7s} AUC {summary['auc']:.3f} [{low:.3f}, {high:.3f}]  "
                      f"TPR@thr {summary['tpr_at_threshold']:.3f}  "
                      f"FPR@thr {summary['fpr_at_threshold']:.3f}  "
                      f"fakes {verdicts['fakes']}  reals {verdicts['reals']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
