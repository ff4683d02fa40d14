"""Ctrl-C during a scan leaves a valid output file, and ``--resume`` finishes the job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apn_testing import write_image


def _wait_for_records(out: Path, proc: subprocess.Popen, minimum: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count('"path"') >= minimum:
            return
        time.sleep(0.05)
    pytest.fail("the scan finished or stalled before it could be interrupted")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_ctrl_c_leaves_valid_output_then_resume_completes(fmt: str, tiny_weights: Path,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(100):
        write_image(folder / f"img{index:03d}.png", size=(32, 32), seed=index)
    out = tmp_path / f"results.{fmt}"
    command = [sys.executable, "-m", "apncli", "scan", str(folder), f"--{fmt}", "--out", str(out),
               "--weights", str(tiny_weights), "--batch-size", "1", "--workers", "1", "--no-provenance"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_records(out, proc, minimum=3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted after" in stderr  # the summary of what was done, and how to go on:
    hint = f"continue with: apn scan {folder} --{fmt} --out {out}"
    assert (hint in stderr) == (fmt == "jsonl")  # a closed JSON document cannot be resumed
    text = out.read_text()
    if fmt == "json":
        records = json.loads(text)["records"]
    else:
        records = [json.loads(line) for line in text.splitlines()]
    assert 3 <= len(records) < 100
    if fmt == "jsonl":
        fast = [arg if arg != "1" else "4" for arg in command]  # resume need not be slow
        resumed = subprocess.run([*fast, "--resume"], capture_output=True, text=True, timeout=300)
        assert resumed.returncode in (0, 1), resumed.stderr
        final = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(r["path"] for r in final) == sorted(str(p) for p in folder.iterdir())
