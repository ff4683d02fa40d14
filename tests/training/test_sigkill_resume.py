"""A training run killed with SIGKILL mid-epoch resumes from its last save and ends identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from synthdata import TINY_TRAIN_FLAGS, make_folder_dataset

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # same summation order in every run


def _command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "apncli", "train", "--dataset", "folder", "--data-root", str(data),
            "--out", str(out), *TINY_TRAIN_FLAGS, "--epochs", "2", "--lr", "1e-3",
            "--club-lr", "1e-3", "--val-fraction", "0.34",
            "--save-every", "1", "--log-every", "1", "--quiet"]


def _steps_logged(out: Path) -> int:
    log = out / "metrics.jsonl"
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if '"type": "step"' in line)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    data = make_folder_dataset(tmp_path / "data", n=12)
    reference = tmp_path / "reference"
    subprocess.run(_command(data, reference), check=True, env=ENV, timeout=600, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(data, killed), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _steps_logged(killed) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (killed / "model.safetensors").exists()

    resumed = subprocess.run([*_command(data, killed), "--resume", str(killed)], env=ENV, timeout=600,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final_ref = load_file(reference / "model.safetensors")
    final_res = load_file(killed / "model.safetensors")
    assert final_ref.keys() == final_res.keys()
    assert all(torch.equal(final_ref[key], final_res[key]) for key in final_ref)
    steps = [json.loads(line)["global_step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
             if '"type": "step"' in line]
    assert steps[-1] == max(steps)
