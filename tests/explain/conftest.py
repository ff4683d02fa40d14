"""Fixtures for explain tests: a tiny detector whose scores vary, its checkpoint on disk, an image."""

from __future__ import annotations

from pathlib import Path

import pytest
from apn_testing import save_tiny_checkpoint, tiny_detector
from explain_helpers import LOGIT_GAIN, write_png


@pytest.fixture(scope="module")
def detector():
    return tiny_detector(logit_gain=LOGIT_GAIN)


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    return save_tiny_checkpoint(tmp_path / "tiny.safetensors", logit_gain=LOGIT_GAIN)


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    return write_png(tmp_path / "photo.png")
