"""Fixtures for explain tests: a tiny detector, its checkpoint on disk, and the CLI run in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from explain_helpers import save_checkpoint, tiny_detector, write_png


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared 2-core box: intra-op threads only contend (one thread is ~20x faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def detector():
    return tiny_detector()


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "tiny.safetensors")


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    return write_png(tmp_path / "photo.png")


class ExplainRun:
    """Exit code and captured streams of one in-process ``apn`` run."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


@pytest.fixture()
def run_apn(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run the real entry point (error boundary included) in-process, as a shell would see it."""
    from apncli.cli.app import app
    from apncli.cli.common import run_guarded

    def run(*args: object) -> ExplainRun:
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["apn", *map(str, args)])
        code = run_guarded(app)
        captured = capsys.readouterr()
        return ExplainRun(int(code), captured.out, captured.err)

    return run
