"""Fixtures for CLI tests: a tiny real checkpoint on disk and folders of tiny images."""

from __future__ import annotations

from pathlib import Path

import pytest
from apn_testing import save_tiny_checkpoint, write_image


@pytest.fixture()
def tiny_weights(tmp_path: Path) -> Path:
    return save_tiny_checkpoint(tmp_path / "tiny.safetensors")


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    """Good images (also in a sub-folder) next to broken ones."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    write_image(root / "a.png", seed=1)
    write_image(root / "B.JPG", seed=2)
    write_image(root / "sub" / "c.webp", seed=3)
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image")
    good = (root / "a.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "notes.txt").write_text("ignored: not an image extension")
    return root
