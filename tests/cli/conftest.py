"""Fixtures for CLI tests: a tiny real checkpoint on disk and folders of tiny images."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import save_tiny_checkpoint, write_image


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


class CliResult:
    """Exit code and captured streams of one in-process ``apn`` run."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


@pytest.fixture()
def run_apn(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run the real entry point (error boundary included) in-process, as a shell would see it."""
    from apncli.cli.app import app
    from apncli.cli.common import run_guarded

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["apn", *map(str, args)])
        code = run_guarded(app)
        captured = capsys.readouterr()
        return CliResult(int(code), captured.out, captured.err)

    return run
