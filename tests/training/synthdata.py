"""Tiny synthetic "real vs generated" images with a learnable generation trace (tests only).

Both classes show the same kind of content: smooth random colour fields with fine sensor-like noise.
A "generated" image is made the way many decoders make pixels: at half resolution, then upsampled by a
fixed nearest-neighbour x2, so its noise comes in 2x2 blocks (a periodic spectral trace). A "real" image
has independent per-pixel noise at full resolution. The content says nothing about the label.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def synth_image(rng: np.random.Generator, size: int, fake: bool) -> np.ndarray:
    """One size x size RGB uint8 image of the given class."""
    grid = rng.random((4, 4, 3)).astype(np.float32)
    content = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) * 160 + 48
    if fake:
        half = cv2.resize(content, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
        half = half + rng.normal(0, 12, half.shape)
        img = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)
    else:
        img = content + rng.normal(0, 12, content.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(
    folder: Path, n: int, fake: bool, seed: int, size: int = 40, ext: str = ".png"
) -> list[Path]:
    """Write n images of one class into folder; returns their paths (sorted)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}{ext}"
        Image.fromarray(synth_image(rng, size, fake)).save(path)
        paths.append(path)
    return paths


def make_folder_dataset(
    root: Path, n: int = 24, gens: tuple[str, ...] = ("gen_a",), seed: int = 0, size: int = 40
) -> Path:
    """``root/real/`` + ``root/fake/<gen>/`` with n images each."""
    write_images(root / "real", n, False, seed, size)
    for i, gen in enumerate(gens):
        write_images(root / "fake" / gen, n, True, seed + 100 + i, size)
    return root


#: `apn train` flags every CLI-level test shares: the tiny config, one CPU process, no loader workers.
TINY_TRAIN_FLAGS = ["--config", "tiny", "--batch-size", "4", "--workers", "0", "--device", "cpu"]
