"""Helpers shared by CLI tests: a tiny real checkpoint and tiny images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from apncli.engine import checkpoint
from apncli.model import build_model


def save_tiny_checkpoint(path: Path, *, threshold: float = 0.5,
                         band: tuple[float, float] | None = None, seed: int = 0) -> Path:
    """A randomly initialised ``tiny`` APN saved in the product's checkpoint format."""
    torch.manual_seed(seed)
    model = build_model("tiny").eval()
    metadata = {
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
    checkpoint.save_checkpoint(path, model.state_dict(), metadata)
    return path



def write_image(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0, mode: str = "RGB") -> Path:
    """A small noisy image; the suffix picks the format."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path
