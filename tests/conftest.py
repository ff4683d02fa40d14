"""Fixtures shared by every test folder: tiny images made on the fly (tests never read real data).

This folder is on ``sys.path`` (pytest's default rootdir/conftest handling), so tests anywhere below can
``from hostile import make_hostile_corpus``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """In-process tests run tiny models: a second intra-op thread only adds contention on 2 shared cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_rgb() -> np.ndarray:
    """A 12×16 RGB uint8 noise image (noise, so that every pixel and channel differs)."""
    return np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)


@pytest.fixture
def tiny_rgb_png(tmp_path: Path, tiny_rgb: np.ndarray) -> Path:
    """``tiny_rgb`` saved losslessly as a PNG file."""
    path = tmp_path / "tiny.png"
    Image.fromarray(tiny_rgb).save(path)
    return path


@pytest.fixture
def tiny_rgb_jpeg(tmp_path: Path, tiny_rgb: np.ndarray) -> Path:
    """``tiny_rgb`` saved as a JPEG file (lossy: compare loosely)."""
    path = tmp_path / "tiny.jpg"
    Image.fromarray(tiny_rgb).save(path, quality=95)
    return path


class CliResult:
    """Exit code and captured streams of one in-process ``apn`` run."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


@pytest.fixture()
def run_apn(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run the real entry point (error boundary and exit code included) in-process, as a shell sees it."""
    from apncli.cli.app import app
    from apncli.cli.common import run_guarded

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["apn", *map(str, args)])
        code = run_guarded(app)
        captured = capsys.readouterr()
        return CliResult(int(code), captured.out, captured.err)

    return run
