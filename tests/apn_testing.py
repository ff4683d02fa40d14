"""Helpers shared by test folders: tiny real checkpoints and detectors, tiny images (never real data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from apncli.engine import checkpoint
from apncli.engine.detector import Detector
from apncli.model import APN, build_model


def tiny_model(seed: int = 0, logit_gain: float = 1.0) -> APN:
    """A random ``tiny`` APN; ``logit_gain`` > 1 spreads p(AI) over (0, 1) instead of ~0.5 everywhere."""
    torch.manual_seed(seed)
    model = build_model("tiny").eval()
    with torch.no_grad():
        model.classifier[-1].weight.mul_(logit_gain)
    return model


def checkpoint_metadata(model: APN, threshold: float = 0.5,
                        band: tuple[float, float] | None = None) -> dict[str, Any]:
    """Metadata in the product's checkpoint format; no band means an empty one (no 'inconclusive')."""
    return {
        "format_version": 1,
        "name": "tiny-test",
        "config": model.config.to_dict(),
        "preprocessing": checkpoint.default_preprocessing(model.config),
        "threshold": threshold,
        "inconclusive_band": list(band) if band else [threshold, threshold],
        "training": {"note": "random weights for tests"},
        "metrics": {},
        "provenance": {"created_by": "tests"},
    }


def save_tiny_checkpoint(path: Path, *, threshold: float = 0.5, band: tuple[float, float] | None = None,
                         seed: int = 0, logit_gain: float = 1.0) -> Path:
    model = tiny_model(seed, logit_gain)
    checkpoint.save_checkpoint(path, model.state_dict(), checkpoint_metadata(model, threshold, band))
    return path


def tiny_detector(seed: int = 0, threshold: float = 0.5, logit_gain: float = 1.0) -> Detector:
    model = tiny_model(seed, logit_gain)
    return Detector.from_model(model, checkpoint_metadata(model, threshold), name="tiny-test", device="cpu")


def write_image(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0, mode: str = "RGB") -> Path:
    """A small noise image; the suffix picks the format."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


#: A file name and an EXIF value that are markup: a report must show them as text and run nothing.
MARKUP_NAME = "<img src=x onerror=alert(1)><script>alert(2).png"
MARKUP_EXIF = "</script><script>window.pwned=1</script><!--"


def markup_folder(root: Path) -> Path:
    """A plain image, one named ``MARKUP_NAME``, one with ``MARKUP_EXIF`` as EXIF Software, a broken file."""
    root.mkdir()
    write_image(root / "plain.png", seed=1)
    write_image(root / MARKUP_NAME, seed=2)
    exif = Image.Exif()
    exif[0x0131] = MARKUP_EXIF  # Software
    Image.open(write_image(root / "exif.jpg", seed=3)).save(root / "exif.jpg", exif=exif)
    (root / "broken.jpg").write_text("not an image")
    return root
