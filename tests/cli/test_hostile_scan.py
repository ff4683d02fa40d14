"""Hundreds of hostile files through the real ``apn scan`` process: no crash, no hang, one record each."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile import ANY, ERROR, OK, make_hostile_corpus

from apncli.data.discover import display_path
from apncli.data.images import IMAGE_EXTENSIONS

PER_FILE_BUDGET_S = 0.5
MAX_PEAK_RSS_MB = 3000


@pytest.mark.slow
def test_hostile_corpus_scan(tiny_weights: Path, tmp_path: Path) -> None:
    corpus_root = tmp_path / "hostile"
    corpus_root.mkdir()
    expected = make_hostile_corpus(corpus_root)
    (corpus_root / "nested").mkdir()
    os.symlink(corpus_root, corpus_root / "nested" / "loop")  # a symlink loop back to the root
    candidates = {display_path(corpus_root / name): outcome for name, outcome in expected.items()
                  if Path(name).suffix.lower() in IMAGE_EXTENSIONS}

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "apncli", "scan", str(corpus_root), "--recursive", "--jsonl",
                           "--weights", str(tiny_weights), "--decode-timeout", "20"],
                          capture_output=True, text=True, timeout=600, errors="surrogateescape")
    elapsed = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    assert proc.returncode in (1, 3), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    by_path = {record["path"]: record for record in records}
    assert len(records) == len(by_path), "a file was reported twice"
    loop_records = [r for r in records if "loop" in (r["error"] or "")]
    assert loop_records, "the symlink loop was not reported"
    assert set(by_path) - {r["path"] for r in loop_records} == set(candidates)
    for path, outcome in candidates.items():
        record = by_path[path]
        assert "\n" not in (record["error"] or "")
        if outcome == OK:
            assert record["error"] is None and 0 <= record["p_ai"] <= 1, (path, record["error"])
        elif outcome == ERROR:
            assert record["error"] and record["p_ai"] is None, path
        else:
            assert outcome == ANY and (record["error"] is None) == (record["p_ai"] is not None)
    assert elapsed < 30 + PER_FILE_BUDGET_S * len(candidates)
    assert peak_mb < MAX_PEAK_RSS_MB
