"""Train, evaluate and ship the default detector (``weights/apn-v2.safetensors``) in one command.

    .venv/bin/python recipes/train_default.py                 # everything: data, train, evaluate, ship
    .venv/bin/python recipes/train_default.py --variants apn --seeds 0   # the shipped run only
    .venv/bin/python recipes/train_default.py --eval-only     # re-evaluate the shipped checkpoint only

Reads ``../shared/data/train`` (training), the 2023-25 generator set built by
``recipes/data/build_modern_fakes.py`` (``--modern``, default ``~/.cache/apn-data/modern``), the camera
photographs of Debian's wallpaper packages (``WALLPAPERS``; ``apt-get install mate-backgrounds
plasma-workspace-wallpapers``) and ``../shared/data/eval`` (development evaluation only: never used to
train, select epochs or set thresholds). Steps:

1. A training manifest of every source (``<work>/train.csv``), CLIP ViT-B/16 teacher features of every
   training image (computed once, shared by all runs) and TAEF2 reconstruction fakes of the training
   reals (aligned pairs, cached in ``--work``; see ``reconstruction_cache``).
2. APN ``pretrained-lite0`` (ImageNet EfficientNet-Lite0 trunks) through the product trainer
   (``apncli.training.trainer``, what ``apn train`` runs) with the full objective, and its ablations
   (without the frequency-band proposal, without the spatial decomposition, without MI and teacher); the
   plain fine-tuned EfficientNet-Lite0 baseline (``recipes/baseline.py``); each for every ``--seeds``.
   Every run of a seed uses the same hold-out: half selects the best epoch, half calibrates the threshold
   (5% false positives on held-back training reals) and the inconclusive band.
3. Evaluation of every run and of ``apn-lite-v1`` on ``eval/modern-2025`` and ``eval/unseen-diffusion``,
   as-is, both classes re-encoded JPEG q85, and downscaled x0.5 then JPEG q85: ROC-AUC with a 1000-sample
   bootstrap 95% interval, TPR and FPR at the run's own threshold, per generator; paired bootstrap AUC
   differences of the shipped run against every other run.
4. The seed-0 run of ``apn`` or ``apn-no-implicit`` with the higher validation AUC (held-out training files)
   is shipped as ``apn-v2`` (registry default), with ``recipes/results/apn-v2.{json,md}``.

Finished steps are skipped on a rerun with the same ``--work`` folder, and an interrupted training run
resumes from its last state; a folder made with other settings or an older revision of the recipe is
refused (``recipe.json`` stamps it). On two CPU cores one run takes ~15-25 minutes (``recipes/results``
quotes the measured times); ``--variants apn --seeds 0`` alone reproduces the shipped file.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))

from baseline import BaselineConfig, load_baseline, train_baseline  # noqa: E402
from reconstruction_cache import centre_crop_reconstruction  # noqa: E402

import apncli.data.reconstruct as reconstruct  # noqa: E402
from apncli.data.augment import AugmentConfig, Perturbation  # noqa: E402
from apncli.data.layouts import list_layout, training_samples  # noqa: E402
from apncli.engine import checkpoint  # noqa: E402
from apncli.engine.cache import resolve_weights  # noqa: E402
from apncli.engine.detector import Detector  # noqa: E402
from apncli.training.dataset import FakeSource, TrainDataset, split_holdout  # noqa: E402
from apncli.training.evaluation import score_samples  # noqa: E402
from apncli.training.losses import LossWeights  # noqa: E402
from apncli.training.metrics import (  # noqa: E402
    bootstrap_ci,
    paired_difference_ci,
    roc_auc,
    tpr_at_fpr,
)
from apncli.training.trainer import TrainConfig, train  # noqa: E402

SHIP_NAME = "apn-v2"
SHIP_FILE = f"{SHIP_NAME}.safetensors"
PREVIOUS = "apn-lite-v1"
RECON_SPEC = "reconstruct:taef2"
TEACHER = "clip_b16"

# Camera photographs among the Debian wallpapers (the rest are drawings and renders), relative to /usr/share.
WALLPAPERS = (
    *(f"wallpapers/{n}/contents/images/1280x1024.jpg" for n in (
        "BytheWater", "ColdRipple", "EveningGlow", "FallenLeaf", "Grey", "OneStandsOut", "Path",
        "summer_1am")),
    *(f"backgrounds/{n}.jpg" for n in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
        "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
        "friends_by_Aitzol_Berasategi", "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
        "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")),
    *(f"backgrounds/mate/nature/{n}.jpg" for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
        "Storm", "TwoWings", "Wood", "YellowFlower")),
)

# Everything the shipped numbers depend on, in one place (the model card quotes it).
RECIPE: dict[str, Any] = {
    # Bumped when code outside this dict changes what a run produces, so an old --work folder is refused
    # instead of silently reused.
    "revision": 5,
    "model": "pretrained-lite0",
    "pretrained": {"efficientnet_lite0": "efficientnet_lite0"},
    "crop": 128,
    "batch_size": 16,
    "lr": 1e-4,
    "val_fraction": 0.1,
    "target_fpr": 0.05,
    "club_data": "reuse",
    "recon_size": 160,
    # Real photos reach users at every size and fakes are shared resized and recompressed: both classes
    # are down-scaled before the crop for half the samples (x0.25-1) and re-encoded for 80%.
    "augment": AugmentConfig(compress_prob=0.8, quality=(60, 100), webp_share=0.25, blur_prob=0.2,
                             blur_sigma=(0.2, 1.2), downscale_prob=0.5, downscale_range=(0.25, 1.0)),
    "epochs": 4,
    "lr_decay_after_epochs": 3,
    "loss_weights": "",  # the full objective of the reference, every term at weight 1 ...
    # ... with alignment and CLUB on L2-normalised features: with raw features the alignment terms started
    # ~450x larger than the cross-entropies and the first epoch ended at validation AUC 0.49; with unit
    # alignment but a raw CLUB pair the features grew until the bound reached -24,000 (pilots, 2026-11-30).
    "feature_space": "unit",
}
# name: (branches, semantic teacher, extra loss weights, band masks); "efficientnet" is the plain baseline.
# Without the teacher L_se2/L_se3 are off, so "apn-no-implicit" keeps the explicit purification (band split,
# subspace projection) and drops every implicit-purification term (alignment, teacher, CLUB).
APN_VARIANTS: dict[str, tuple[str, bool, str, str]] = {
    "apn": ("both", True, "", "hard"),
    "apn-no-implicit": ("both", False, "gen=0,se1=0,mi=0", "hard"),
    # relative to the shipped run (no implicit purification): one branch alone, or band masks that pass
    # the task gradient to the band proposers (hard values, soft gradient; the paper's hard masks pass none)
    "apn-no-band-proposal": ("spatial", False, "gen=0,se1=0,mi=0", "hard"),
    "apn-no-spatial": ("frequency", False, "gen=0,se1=0,mi=0", "hard"),
    "apn-straight-through": ("both", False, "gen=0,se1=0,mi=0", "straight-through"),
}
VARIANTS = ("apn", "efficientnet", *list(APN_VARIANTS)[1:])
# Shipped: the seed-0 APN run with the full objective or without implicit purification, whichever has the
# higher validation AUC on the held-out *training* files (rule fixed before any eval/ score was seen: the full
# objective learned visibly slower than the plain baseline in the first epochs).
SHIP_CANDIDATES = ("apn-s0", "apn-no-implicit-s0")
EVAL_SETS = ("modern-2025", "unseen-diffusion")
_HALF, _JPEG85 = Perturbation.parse("resize:0.5"), Perturbation.parse("jpeg:85")
CONDITIONS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "as-is": None, "jpeg85": _JPEG85, "half-jpeg85": lambda rgb: _JPEG85(_HALF(rgb))}
N_BOOT = 1000
#: The eval set / condition pairs of the summary tables (ablations, seed-matched differences).
TABLE_COLUMNS = [f"{s}/{c}" for s in EVAL_SETS for c in ("as-is", "jpeg85")]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------- training


def recon_source(work: Path, taef2_dir: Path) -> FakeSource:
    enc, dec = taef2_dir / reconstruct.ENCODER_FILE, taef2_dir / reconstruct.DECODER_FILE
    model = reconstruct.make_reconstruction_source(RECON_SPEC, encoder_path=enc, decoder_path=dec)
    return centre_crop_reconstruction(work / "taef2-cache", RECIPE["recon_size"], model)


@contextlib.contextmanager
def cached_reconstruction(source: FakeSource) -> Iterator[None]:
    """Make the trainer's ``--fakes reconstruct:taef2`` use the recipe's centre-crop reconstructions.

    The trainer builds its sources through ``apncli.data.reconstruct.make_reconstruction_source`` and would
    reconstruct each whole photo once per run (seconds per photo on CPU); the recipe's memo is shared by
    every variant instead.
    """
    original = reconstruct.make_reconstruction_source
    reconstruct.make_reconstruction_source = lambda spec, **_: source  # type: ignore[assignment]
    try:
        yield
    finally:
        reconstruct.make_reconstruction_source = original  # type: ignore[assignment]


def build_manifest(data: Path, modern: Path, work: Path) -> Path:
    """``<work>/train.csv`` (path,label,generator) over every training source; a missing one is logged."""
    rows: list[tuple[str, str, str]] = []
    for root in (data / "train", modern):
        if not root.is_dir():
            log(f"manifest: {root} is missing; training without it")
            continue
        for s in training_samples("folder", root, None):
            rows.append((str(s.path), "fake" if s.label else "real", s.generator if s.label else ""))
    walls = [Path("/usr/share") / w for w in WALLPAPERS]
    present = [w for w in walls if w.is_file()]
    if len(present) < len(walls):
        log(f"manifest: {len(walls) - len(present)} of {len(walls)} wallpaper photos are not installed")
    rows += [(str(w), "real", "") for w in present]
    path = work / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("path", "label", "generator"), *sorted(set(rows))])
    counts = {label: sum(r[1] == label for r in rows) for label in ("real", "fake")}
    log(f"manifest: {counts['real']} real, {counts['fake']} fake files -> {path}")
    return path


def teacher_features(manifest: Path, work: Path) -> Path:
    """CLIP ViT-B/16 features of every manifest image, once; each run folder gets a copy (the trainer
    reuses a file that covers its training split)."""
    from apncli.model.clip import ClipImageTower
    from apncli.training.teacher import write_teacher_features

    path = work / f"teacher-{TEACHER}.apn-teacher"
    paths = [s.path for s in training_samples("manifest", manifest, None)]
    tower = ClipImageTower(resolve_weights(TEACHER), threads=torch.get_num_threads())
    return write_teacher_features(tower, paths, path, TEACHER, log)


def decay_step(manifest: Path, seed: int, fakes: dict[str, FakeSource]) -> int:
    """Iterations until the x0.1 learning-rate decay: ``lr_decay_after_epochs`` epochs of this run.

    The epoch length comes from the trainers' own ``TrainDataset`` (nothing is decoded to build it).
    """
    split = split_holdout(training_samples("manifest", manifest, None), RECIPE["val_fraction"], seed)
    items = len(TrainDataset(split.train, RECIPE["crop"], RECIPE["augment"], seed, fakes))
    return RECIPE["lr_decay_after_epochs"] * (items // RECIPE["batch_size"])


def trained_file(work: Path, run: str) -> Path:
    """The file a finished run leaves: the checkpoint of an APN run, the summary of a baseline run."""
    return work / run / ("baseline.json" if run.startswith("efficientnet") else "model.safetensors")


def train_apn(variant: str, seed: int, manifest: Path, work: Path, source: FakeSource, command: str) -> None:
    out = work / f"{variant}-s{seed}"
    if trained_file(work, out.name).is_file():
        log(f"{out.name}: already trained")
        return
    branches, use_teacher, extra, mask = APN_VARIANTS[variant]
    out.mkdir(parents=True, exist_ok=True)
    if use_teacher:  # the shared features file, which the trainer reuses
        shutil.copyfile(work / f"teacher-{TEACHER}.apn-teacher", out / f"teacher-{TEACHER}.apn-teacher")
    cfg = TrainConfig(
        dataset="manifest", data_root=manifest, out=out, model=RECIPE["model"], crop=RECIPE["crop"],
        branches=branches, mask=mask, epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"],
        lr=RECIPE["lr"],
        step_size=decay_step(manifest, seed, {RECON_SPEC: source}),
        seed=seed, val_fraction=RECIPE["val_fraction"], target_fpr=RECIPE["target_fpr"],
        club_data=RECIPE["club_data"], feature_space=RECIPE["feature_space"], workers=2, device="cpu",
        fakes=(RECON_SPEC,),
        teacher=TEACHER if use_teacher else None, pretrained=dict(RECIPE["pretrained"]),
        augment=RECIPE["augment"],
        loss_weights=LossWeights.parse(",".join(w for w in (RECIPE["loss_weights"], extra) if w)),
        name=f"{SHIP_NAME}-{out.name}", command=command, progress=False,
        resume=out if (out / "state-last.apn-state").is_file() else None,  # continue an interrupted run
    )
    log(f"{out.name}: training APN {RECIPE['model']} (branches {branches}, masks {mask}, "
        f"teacher {cfg.teacher})")
    with cached_reconstruction(source):
        train(cfg, log=lambda m: log(f"{out.name}: {m}"))


def train_cnn(seed: int, manifest: Path, work: Path, source: FakeSource) -> None:
    out = work / f"efficientnet-s{seed}"
    if trained_file(work, out.name).is_file():
        log(f"{out.name}: already trained")
        return
    sources = {RECON_SPEC: source}
    cfg = BaselineConfig(data_root=manifest, dataset="manifest", out=out, crop=RECIPE["crop"],
                         arch="efficientnet_lite0", epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"],
                         lr=RECIPE["lr"], step_size=decay_step(manifest, seed, sources), seed=seed,
                         val_fraction=RECIPE["val_fraction"], target_fpr=RECIPE["target_fpr"],
                         augment=RECIPE["augment"], fake_sources=sources)
    log(f"{out.name}: training the plain EfficientNet-Lite0 baseline (epochs {cfg.epochs})")
    started = time.monotonic()
    train_baseline(cfg, log=lambda m: log(f"{out.name}: {m}"))
    log(f"{out.name}: done in {time.monotonic() - started:.0f} s")


# ----------------------------------------------------------------------------------------- evaluation


def _eval_samples(root: Path) -> list:
    unique = {}
    for group in list_layout("folder", root, "test").values():
        for s in (*group.reals, *group.fakes):
            unique.setdefault(s.path, s)
    return sorted(unique.values())


def _summary(paths: list[str], labels: np.ndarray, scores: np.ndarray, threshold: float,
             band: tuple[float, float]) -> dict[str, Any]:
    real, fake = labels == 0, labels == 1
    flagged = scores >= threshold
    inconclusive = (scores >= band[0]) & (scores <= band[1]) & (band[0] < band[1])
    per_group: dict[str, Any] = {}
    families = sorted({Path(p).parent.name for p, y in zip(paths, labels, strict=True) if y == 1})
    for fam in families:
        fakes = np.array([Path(p).parent.name == fam and y == 1 for p, y in zip(paths, labels, strict=True)])
        same = np.array([Path(p).parent.name == fam and y == 0 for p, y in zip(paths, labels, strict=True)])
        reals = same if same.any() else real  # gan-thumbnails pairs reals and fakes per family
        keep = fakes | reals
        per_group[fam] = {"n_fake": int(fakes.sum()), "n_real": int(reals.sum()),
                          "auc": roc_auc(labels[keep], scores[keep]),
                          "tpr_at_threshold": float(flagged[fakes].mean())}
    return {
        "n_real": int(real.sum()), "n_fake": int(fake.sum()),
        "auc": roc_auc(labels, scores),
        "auc_ci95": list(bootstrap_ci(labels, scores, roc_auc, N_BOOT, seed=0)),
        "threshold": threshold,
        "tpr_at_threshold": float(flagged[fake].mean()),
        "fpr_at_threshold": float(flagged[real].mean()),
        "inconclusive_share": float(inconclusive.mean()),
        "tpr_at_5pct_fpr_oracle": tpr_at_fpr(labels, scores, 0.05),
        "per_generator": per_group,
    }


def evaluate(variant: str, detector: Detector, data: Path, work: Path) -> dict[str, Any]:
    """Score every eval image under each condition (scores cached per variant) and summarise."""
    threshold = detector.info.threshold
    band = detector.info.inconclusive_band or (threshold, threshold)

    def predict(images: list[np.ndarray]) -> np.ndarray:
        return detector.predict(images, batch_size=32)

    results: dict[str, Any] = {}
    for set_name in EVAL_SETS:
        samples = _eval_samples(data / "eval" / set_name)
        for cond, transform in CONDITIONS.items():
            cache = _scores_path(work, variant, set_name, cond)
            if cache.is_file():
                rows = json.loads(cache.read_text(encoding="utf-8"))
            else:
                started = time.monotonic()
                scored = score_samples(predict, samples, transform)
                rows = {"paths": [str(s.path) for s in scored.samples], "labels": scored.labels.tolist(),
                        "scores": scored.scores.tolist(), "errors": scored.errors,
                        "seconds": time.monotonic() - started}
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(rows), encoding="utf-8")
            labels, scores = np.array(rows["labels"]), np.array(rows["scores"])
            summary = _summary(rows["paths"], labels, scores, threshold, band)
            summary["skipped"] = rows["errors"]
            results[f"{set_name}/{cond}"] = summary
            log(f"{variant} {set_name} {cond}: AUC {summary['auc']:.3f} "
                f"[{summary['auc_ci95'][0]:.3f}, {summary['auc_ci95'][1]:.3f}], TPR@thr "
                f"{summary['tpr_at_threshold']:.3f}, FPR@thr {summary['fpr_at_threshold']:.3f}")
    return results


def _scores_path(work: Path, variant: str, set_name: str, cond: str) -> Path:
    """Where ``evaluate`` keeps one run's scores on one eval set and condition (``compare`` reads them)."""
    return work / "scores" / f"{variant}--{set_name}--{cond}.json"


def _cached_scores(work: Path, variant: str, set_name: str, cond: str) -> dict[str, tuple[int, float]]:
    rows = json.loads(_scores_path(work, variant, set_name, cond).read_text(encoding="utf-8"))
    return {p: (y, s) for p, y, s in zip(rows["paths"], rows["labels"], rows["scores"], strict=True)}


def compare(work: Path, variant: str, baseline: str) -> dict[str, Any]:
    """ROC-AUC of ``variant`` minus ``baseline`` on every eval set and condition, with a paired bootstrap
    interval (both scored on the same resampled images; their separate intervals overlap far more)."""
    out = {}
    for set_name in EVAL_SETS:
        for cond in CONDITIONS:
            a, b = (_cached_scores(work, v, set_name, cond) for v in (variant, baseline))
            paths = sorted(a.keys() & b.keys())
            labels = np.array([a[p][0] for p in paths])
            sa, sb = (np.array([d[p][1] for p in paths]) for d in (a, b))
            out[f"{set_name}/{cond}"] = {
                "delta_auc": roc_auc(labels, sa) - roc_auc(labels, sb),
                "ci95": list(paired_difference_ci(labels, sa, sb, n_boot=N_BOOT, seed=0)),
                "n": len(paths),
            }
    return out


def load_run(run: str, work: Path) -> Detector:
    if run == PREVIOUS:
        return Detector.load(PREVIOUS, device="cpu")
    if run.startswith("efficientnet"):
        return load_baseline(work / run)
    return Detector.load(work / run / "model.safetensors", device="cpu")


# ---------------------------------------------------------------------------------------------- report


def markdown(report: dict[str, Any]) -> str:
    status = "Shipped" if report["shipped"].get("file") else "Not shipped (`--no-ship`), compared"
    lines = [
        f"# {SHIP_NAME}: development evaluation (generators absent from training)",
        "",
        f"Command: `{report['command']}`.",
        f"{status}: `{report['shipped']['run']}` (its epoch chosen by validation AUC on held-out *training* "
        "files). Threshold of each run: its own, calibrated for 5% FPR on held-back training reals.",
        "AUC interval: 95% percentile bootstrap (1000 resamples, classes resampled separately). Conditions: "
        "as-is; both classes re-encoded JPEG q85; both downscaled x0.5 then JPEG q85.",
        "",
        "| run | eval set | condition | n real/fake | ROC-AUC [95% CI] | TPR@thr | FPR@thr (reals) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, res in report["evaluation"].items():
        for key, s in res.items():
            set_name, cond = key.split("/")
            lo, hi = s["auc_ci95"]
            lines.append(f"| {run} | {set_name} | {cond} | {s['n_real']}/{s['n_fake']} | "
                         f"{s['auc']:.3f} [{lo:.3f}, {hi:.3f}] | {s['tpr_at_threshold']:.3f} | "
                         f"{s['fpr_at_threshold']:.3f} |")
    shipped = report["shipped"]["run"]
    lines += ["", f"Per generator, `{shipped}` (AUC against all reals of the set; TPR at its threshold):", "",
              "| eval set | condition | generator | n | AUC | TPR@thr |", "|---|---|---|---|---|---|"]
    for key, s in report["evaluation"].get(shipped, {}).items():
        set_name, cond = key.split("/")
        for gen, g in s["per_generator"].items():
            lines.append(f"| {set_name} | {cond} | {gen} | {g['n_fake']} | {g['auc']:.3f} | "
                         f"{g['tpr_at_threshold']:.3f} |")
    if report.get("comparisons"):
        lines += ["", f"ROC-AUC of `{shipped}` minus each other run's, with a paired 95% bootstrap interval "
                  "(the same resampled images for both):", "",
                  "| other run | eval set | condition | ΔAUC [95% CI] |", "|---|---|---|---|"]
        for other, res in report["comparisons"].items():
            for key, d in res.items():
                set_name, cond = key.split("/")
                lo, hi = d["ci95"]
                delta = f"{d['delta_auc']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                lines.append(f"| {other} | {set_name} | {cond} | {delta} |")
    lines += ablation_lines(report)
    if report.get("seed_matched"):
        lines += ["", "Seed by seed: ΔAUC of the shipped variant minus each other variant trained with the "
                  "same seed, paired 95% bootstrap interval:", "",
                  "| runs | " + " | ".join(TABLE_COLUMNS) + " |", "|---|" + "---|" * len(TABLE_COLUMNS)]
        for pair, res in report["seed_matched"].items():
            cells = [f"{res[k]['delta_auc']:+.3f} [{res[k]['ci95'][0]:+.3f}, {res[k]['ci95'][1]:+.3f}]"
                     for k in TABLE_COLUMNS]
            lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    lines += ["", "| run | validation AUC (held-out training files) | threshold | band | train seconds |",
              "|---|---|---|---|---|"]
    for run, info in report["runs"].items():
        band = info["inconclusive_band"]
        lines.append(f"| {run} | {info['val_auc']:.4f} | {info['threshold']:.4f} | "
                     f"[{band[0]:.4f}, {band[1]:.4f}] | {info['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


#: What each variant removes or changes, in the paper's ablation terms (reference §6), for the seed table.
ABLATIONS = {
    "apn": "full objective (explicit + implicit purification, CLIP teacher)",
    "apn-no-implicit": "w/o MI and teacher (implicit purification off)",
    "apn-no-band-proposal": "w/o frequency-band proposal (spatial branch alone)",
    "apn-no-spatial": "w/o spatial decomposition (frequency branch alone)",
    "apn-straight-through": "w/o MI and teacher, straight-through band masks",
    "efficientnet": "plain fine-tuned EfficientNet-Lite0 (no APN)",
}


def ablation_lines(report: dict[str, Any]) -> list[str]:
    """The ablation table: per variant, ROC-AUC as-is and after JPEG-85 averaged over its seeds (each
    seed's value in brackets), so seed-to-seed spread is visible beside every difference."""
    seeds: dict[str, list[str]] = {}
    for run in report["evaluation"]:
        variant, _, seed = run.rpartition("-s")
        if variant in ABLATIONS and seed.isdigit():
            seeds.setdefault(variant, []).append(run)
    lines = ["", "Ablations: ROC-AUC, mean over seeds (per seed in brackets):", "",
             "| variant | seeds | " + " | ".join(TABLE_COLUMNS) + " |",
             "|---|---|" + "---|" * len(TABLE_COLUMNS)]
    for variant, runs in seeds.items():
        cells = []
        for key in TABLE_COLUMNS:
            aucs = [report["evaluation"][r][key]["auc"] for r in runs]
            cells.append(f"{np.mean(aucs):.3f} ({', '.join(f'{a:.3f}' for a in aucs)})")
        lines.append(f"| {variant}: {ABLATIONS[variant]} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def run_info(run: str, work: Path) -> dict[str, Any]:
    if run.startswith("efficientnet"):
        meta = json.loads((work / run / "baseline.json").read_text(encoding="utf-8"))
        best = max(h["val"]["auc"] for h in meta["history"])
        return {"val_auc": best, "threshold": meta["threshold"],
                "inconclusive_band": meta["inconclusive_band"], "seconds": meta["seconds"],
                "history": meta["history"]}
    meta = checkpoint.read_metadata(work / run / "model.safetensors")
    return {"val_auc": meta["metrics"]["validation"]["auc"], "threshold": meta["threshold"],
            "inconclusive_band": meta["inconclusive_band"], "seconds": meta["training"]["seconds"],
            "calibration": meta["metrics"].get("calibration")}


def ship(run: str, work: Path, evaluation: dict[str, Any], command: str) -> Path:
    """Copy the chosen run into weights/ with its development-evaluation numbers in the metadata."""
    state, meta = checkpoint.load_checkpoint(work / run / "model.safetensors")
    meta["name"] = SHIP_NAME
    meta["training"]["recipe"] = command
    meta["training"]["run"] = run
    meta["metrics"]["development_eval"] = {k: {m: v for m, v in s.items() if m != "per_generator"}
                                           for k, s in evaluation.items()}
    meta["provenance"]["trained_by"] = "recipes/train_default.py (apncli.training.trainer)"
    dest = REPO / "weights" / SHIP_FILE
    checkpoint.save_checkpoint(dest, state, json.loads(json.dumps(meta, allow_nan=False)))
    registry_path = REPO / "weights" / "registry.json"
    registry = json.loads(registry_path.read_text(encoding="utf-8"))
    for entry in registry.values():
        entry.pop("default", None)
    registry[SHIP_NAME] = {
        "kind": "detector", "file": SHIP_FILE, "sha256": checkpoint.file_sha256(dest),
        "size": dest.stat().st_size, "default": True, "description": _description(run, meta),
        "license": "research use (training data: ImageNet research terms, public generator samples)",
    }
    registry_path.write_text(json.dumps(registry, indent=2) + "\n", encoding="utf-8")
    return dest


def _description(run: str, meta: dict[str, Any]) -> str:
    """The registry's one-line description of the shipped run: which purification it was trained with."""
    teacher = meta["training"]["hyperparameters"].get("teacher")
    purification = (f"explicit and implicit purification ({teacher} teacher)" if teacher
                    else f"explicit purification only (the {run.rsplit('-s', 1)[0]} run: no CLIP teacher)")
    return ("APN with ImageNet EfficientNet-Lite0 trunks, 128-px crops, trained on 2022 and 2023-24 "
            f"generators + aligned TAEF2 reconstruction pairs; {purification}; see weights/README.md")


def recipe_record() -> dict[str, Any]:
    return {k: (asdict(v) if isinstance(v, AugmentConfig) else v) for k, v in RECIPE.items()}


def claim_work_folder(work: Path) -> str | None:
    """Stamp ``work`` with the recipe, or say why it cannot be used (None when it can).

    Finished steps are skipped by run name, so a folder holding runs made with other settings (or by an
    older revision of the recipe) would be reused silently; it is refused instead.
    """
    stamp = work / "recipe.json"
    current = json.dumps(recipe_record(), sort_keys=True)
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == current:
        return None
    runs = [p for p in work.glob("*-s*") if p.is_dir()] if work.is_dir() else []
    if stamp.is_file() or runs:  # caches (manifest, teacher, reconstructions) are keyed by content
        return (f"{work} holds runs made with other recipe settings or an older recipe revision; "
                "use a new --work folder (or delete this one)")
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current, encoding="utf-8")
    return None


def train_runs(variants: list[str], seeds: list[int], args: argparse.Namespace, command: str) -> list[str]:
    """Every (variant, seed) run, seed by seed (the shipped run first); returns the run names."""
    manifest = build_manifest(args.data, args.modern, args.work)
    if any(APN_VARIANTS.get(v, ("", False, "", ""))[1] for v in variants):
        teacher_features(manifest, args.work)
    source = recon_source(args.work, args.taef2)
    runs = []
    for seed in seeds:
        for v in variants:
            if v == "efficientnet":
                train_cnn(seed, manifest, args.work, source)
            else:
                train_apn(v, seed, manifest, args.work, source, command)
            runs.append(f"{v}-s{seed}")
    return runs


def trained_runs(variants: list[str], seeds: list[int], work: Path) -> list[str]:
    """The (variant, seed) runs already trained in ``work``, in ``train_runs`` order; logs the missing."""
    runs = []
    for seed in seeds:
        for v in variants:
            run = f"{v}-s{seed}"
            if trained_file(work, run).is_file():
                runs.append(run)
            else:
                log(f"{run}: not trained in {work}; left out of the report")
    return runs


def seed_matched(runs: list[str], reference: str, work: Path) -> dict[str, Any]:
    """ΔAUC of the shipped variant's run of each seed minus every other variant's run of the same seed: the
    ablation differences seed by seed, since one seed's difference can be the seed's, not the variant's."""
    out = {}
    for run in runs:
        variant, _, seed = run.rpartition("-s")
        ref = f"{reference}-s{seed}"
        if variant != reference and ref in runs:
            out[f"{ref} − {run}"] = compare(work, ref, run)
    return out


def report_runs(runs: list[str], args: argparse.Namespace, command: str) -> dict[str, Any]:
    report: dict[str, Any] = {"recipe": recipe_record(), "command": command, "runs": {}, "evaluation": {}}
    for run in runs:
        report["runs"][run] = run_info(run, args.work)
    for run in (*runs, PREVIOUS):
        report["evaluation"][run] = evaluate(run, load_run(run, args.work), args.data, args.work)
    candidates = [r for r in SHIP_CANDIDATES if r in runs] or runs[:1]
    chosen = max(candidates, key=lambda r: report["runs"][r]["val_auc"])
    report["shipped"] = {"run": chosen, "rule": "highest validation AUC of " + ", ".join(candidates)}
    report["comparisons"] = {b: compare(args.work, chosen, b) for b in (*runs, PREVIOUS) if b != chosen}
    report["seed_matched"] = seed_matched(runs, chosen.rpartition("-s")[0], args.work)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--modern", type=Path, default=Path.home() / ".cache" / "apn-data" / "modern")
    taef2 = os.environ.get(reconstruct.ENV_DIR, REPO.parent / "shared" / "models" / "taef2")
    parser.add_argument("--taef2", type=Path, default=Path(taef2))
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "apn-recipe-v2")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="subset to train (comma list)")
    parser.add_argument("--seeds", default="0,1", help="training seeds (comma list)")
    parser.add_argument("--train-only", action="store_true", help="stop after training")
    parser.add_argument("--no-ship", action="store_true",
                        help="write the report into --work, not weights/ or recipes/results/")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the shipped checkpoint only")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: evaluate and report the runs of --variants x --seeds already "
                        "trained in --work (the others are logged as missing); implies --no-ship")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    command = "python recipes/train_default.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if not (args.data / "train").is_dir():
        log(f"no training data at {args.data}/train: nothing to do")
        return 0
    if args.eval_only:
        ev = evaluate("shipped", Detector.load(SHIP_NAME, device="cpu"), args.data, args.work / "eval-only")
        print(json.dumps(ev, indent=2))
        return 0
    problem = claim_work_folder(args.work)
    if problem:
        log(problem)
        return 2
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        log(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
        return 2
    seeds = [int(x) for x in args.seeds.split(",") if x]
    if args.report_only:
        args.no_ship = True  # a report never replaces the shipped file
        runs = trained_runs(variants, seeds, args.work)
        if not runs:
            log("no trained runs to report")
            return 2
    else:
        runs = train_runs(variants, seeds, args, command)
    if args.train_only:
        return 0
    report = report_runs(runs, args, command)
    results = args.work
    chosen = report["shipped"]["run"]
    if chosen in SHIP_CANDIDATES and not args.no_ship:
        dest = ship(chosen, args.work, report["evaluation"][chosen], command)
        report["shipped"].update({"file": f"weights/{dest.name}", "sha256": checkpoint.file_sha256(dest),
                                  "bytes": dest.stat().st_size})
        results = REPO / "recipes" / "results"
        log(f"shipped {chosen} as {dest} (sha256 {report['shipped']['sha256']})")
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{SHIP_NAME}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (results / f"{SHIP_NAME}.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
