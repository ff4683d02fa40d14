"""The plain-CNN baseline of the default-model recipe: same data, crops, augmentations and fakes as APN.

Why it exists: APN's value (band purification, spatial-subspace split, alignment losses) is only shown if a
plain detector trained on *exactly* the same files, augmentation draws, step budget, hold-out split and
threshold rule does worse on unseen generators. The baseline is one trunk with one linear layer, trained
with plain cross-entropy: the ``resnet_lite``-shaped trunk of :mod:`apncli.model.backbones` (the band head
APN itself uses; from scratch) or an ImageNet-initialised EfficientNet-Lite (fine-tuned, the baseline of
the pretrained APN). It is scored through :class:`apncli.engine.detector.Detector`, so its crops and tile
averaging are exactly those of ``apn scan``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from apncli.data.augment import AugmentConfig
from apncli.data.layouts import training_samples
from apncli.engine.cache import resolve_weights
from apncli.engine.checkpoint import default_preprocessing, load_torch_weights_only
from apncli.engine.detector import Detector
from apncli.model import APNConfig, get_config
from apncli.model.apn import ImageNetTrunk
from apncli.model.backbones import ResNet
from apncli.model.config import PRETRAINED_TRUNKS
from apncli.training.calibration import calibrate
from apncli.training.dataset import TrainDataset, collate, split_holdout
from apncli.training.evaluation import score_samples
from apncli.training.metrics import detection_report
from apncli.training.trainer import lr_schedule

__all__ = ["BaselineConfig", "PlainCNN", "baseline_detector", "train_baseline"]

MODEL_FILE = "baseline.safetensors"
META_FILE = "baseline.json"


class PlainCNN(nn.Module):
    """A trunk + linear head; ``forward`` returns an object with ``.logits`` like APN's output.

    ``arch`` is ``resnet_lite`` (the config's ResNet shape) or an EfficientNet-Lite name (ImageNet-shaped,
    fed APN's BGR [0, 1] input through :class:`ImageNetTrunk`). ``config`` is carried only so the product's
    ``Detector`` knows the crop size (it is not an APN).
    """

    def __init__(self, config: APNConfig, arch: str = "resnet_lite") -> None:
        super().__init__()
        self.config = config
        self.trunk: nn.Module
        if arch in PRETRAINED_TRUNKS:
            self.trunk = ImageNetTrunk(arch)
        elif arch == "resnet_lite":
            self.trunk = ResNet(config.resnet_widths, config.resnet_blocks)
        else:
            raise ValueError(f"unknown baseline arch {arch!r}")
        self.head = nn.Linear(self.trunk.out_dim, 2)

    def forward(self, x: torch.Tensor, irrelevant: bool = True) -> SimpleNamespace:
        """``irrelevant`` only mirrors APN's signature (the Detector asks APN to skip its semantic head)."""
        return SimpleNamespace(logits=self.head(self.trunk(x)))


@dataclass
class BaselineConfig:
    """Mirror of the APN run's data settings, so the comparison isolates the architecture and losses."""

    data_root: Path
    out: Path
    dataset: str = "folder"  # a layout of apncli.data.layouts (``manifest`` for a CSV)
    crop: int = 128
    arch: str = "resnet_lite"  # or an EfficientNet-Lite, initialised from its ImageNet weights
    epochs: int = 4
    batch_size: int = 16
    lr: float = 3e-4
    step_size: int = 30000  # iterations between x0.1 learning-rate decays, as the APN trainer's
    seed: int = 0
    val_fraction: float = 0.1
    target_fpr: float = 0.05
    workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    fake_sources: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)


def _metadata(config: APNConfig, threshold: float, band: tuple[float, float]) -> dict[str, Any]:
    return {"format_version": 1, "name": "plain-cnn-baseline", "config": config.to_dict(),
            "preprocessing": default_preprocessing(config), "threshold": threshold,
            "inconclusive_band": list(band)}


def baseline_detector(model: PlainCNN, threshold: float = 0.5,
                      band: tuple[float, float] = (0.5, 0.5)) -> Detector:
    """Wrap the CNN in the product's Detector (same crops, tiling and averaging as ``apn scan``)."""
    return Detector.from_model(model, _metadata(model.config, threshold, band), name="plain-cnn-baseline")


def _score(model: PlainCNN, samples: list, workers: int) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    det = baseline_detector(model)
    scored = score_samples(lambda imgs: det.predict(imgs, batch_size=32), samples, workers=workers)
    return scored.labels, scored.scores


def train_baseline(cfg: BaselineConfig, log: Callable[[str], None] = print) -> Path:
    """Train, select the best epoch on the validation hold-out, calibrate on the calibration hold-out."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    config = dataclasses.replace(get_config("lite"), crop=cfg.crop)
    split = split_holdout(training_samples(cfg.dataset, cfg.data_root, None), cfg.val_fraction, cfg.seed)
    data = TrainDataset(split.train, cfg.crop, cfg.augment, cfg.seed, cfg.fake_sources, stream=0)
    model = PlainCNN(config, cfg.arch)
    if cfg.arch in PRETRAINED_TRUNKS:
        state = load_torch_weights_only(resolve_weights(cfg.arch))
        result = model.trunk.trunk.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith("_fc.")}, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise ValueError(f"{cfg.arch} weights do not fit: {missing[:3]} {result.unexpected_keys[:3]}")
        log(f"baseline: {cfg.arch} initialised from its ImageNet weights")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = lr_schedule(opt, cfg.step_size)
    best_auc, best_state, history = -1.0, None, []
    started = time.monotonic()
    for epoch in range(cfg.epochs):
        data.set_epoch(epoch)
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        loader = DataLoader(data, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                            collate_fn=collate, drop_last=True)
        model.train()
        losses = []
        for batch in loader:
            loss = nn.functional.cross_entropy(model(batch.images).logits, batch.labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(float(loss.detach()))
        labels, scores = _score(model, split.val, cfg.workers)
        report = detection_report(labels, scores, 0.5)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val": report})
        log(f"baseline epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.4f}, "
            f"val AUC {report['auc']:.4f}")
        if report["auc"] > best_auc:
            best_auc, best_state = report["auc"], {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    labels, scores = _score(model, split.calib, cfg.workers)
    cal = calibrate(labels, scores, cfg.target_fpr)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(cfg.out / MODEL_FILE))
    meta = {"config": config.to_dict(), "arch": cfg.arch, "threshold": cal.threshold,
            "inconclusive_band": list(cal.inconclusive_band), "calibration": cal.to_dict(),
            "history": history, "seconds": time.monotonic() - started,
            "train_files": len(split.train), "items": len(data)}
    (cfg.out / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return cfg.out / MODEL_FILE


def load_baseline(out: Path) -> Detector:
    """The trained baseline as a Detector with its calibrated threshold."""
    meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
    model = PlainCNN(APNConfig.from_dict(meta["config"]), meta.get("arch", "resnet_lite"))
    model.load_state_dict(load_file(str(out / MODEL_FILE)))
    return baseline_detector(model, meta["threshold"], tuple(meta["inconclusive_band"]))
