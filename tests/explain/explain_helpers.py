"""Helpers for explain tests: a tiny detector whose scores actually vary, tiny images and checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from apncli.engine import checkpoint
from apncli.engine.detector import Detector
from apncli.model import APN, build_model

LOGIT_GAIN = 10.0  # a random tiny APN scores everything ~0.5; sharpen it so occlusion deltas are visible


def tiny_model(seed: int = 0) -> APN:
    """A random ``tiny`` APN whose last classifier layer is scaled up so p(AI) spreads over (0, 1)."""
    torch.manual_seed(seed)
    model = build_model("tiny").eval()
    with torch.no_grad():
        model.classifier[-1].weight.mul_(LOGIT_GAIN)
    return model


def metadata(model: APN, threshold: float = 0.5) -> dict:
    return {
        "format_version": 1,
        "name": "tiny-explain",
        "config": model.config.to_dict(),
        "preprocessing": checkpoint.default_preprocessing(model.config),
        "threshold": threshold,
        "inconclusive_band": [threshold, threshold],  # an empty band: no "inconclusive" verdicts
        "training": {},
        "metrics": {},
        "provenance": {"created_by": "tests"},
    }


def tiny_detector(seed: int = 0, threshold: float = 0.5) -> Detector:
    model = tiny_model(seed)
    return Detector.from_model(model, metadata(model, threshold), name="tiny-explain", device="cpu")


def save_checkpoint(path: Path, seed: int = 0, threshold: float = 0.5) -> Path:
    model = tiny_model(seed)
    checkpoint.save_checkpoint(path, model.state_dict(), metadata(model, threshold))
    return path


def image_array(height: int = 48, width: int = 40, seed: int = 0) -> np.ndarray:
    """Noise plus a stripe pattern: some structure in the spectrum, not just flat noise."""
    rng = np.random.default_rng(seed)
    xx = np.mgrid[0:height, 0:width][1]
    pattern = 100 + 60 * np.sin(xx / 2.5)[..., None] + rng.normal(0, 30, (height, width, 3))
    return np.clip(pattern, 0, 255).astype(np.uint8)


def write_png(path: Path, height: int = 48, width: int = 40, seed: int = 0) -> Path:
    Image.fromarray(image_array(height, width, seed)).save(path)
    return path
