"""Read scan outputs (``--json`` documents or ``--jsonl`` files) and merge several into one.

Torch-free, so ``apn merge`` and ``apn report`` start at once. Records are plain dicts in the scan record
schema (README, "Scan record schema"); they are never rewritten, only reordered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apncli.errors import UsageError, one_line


@dataclass
class ScanResults:
    """Records of one or more scans and the run manifests that came with them (none for JSONL)."""

    records: list[dict[str, Any]]
    manifests: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the files the records were read from
    skipped_lines: int = 0  # torn last lines of interrupted JSONL files, left out


def load_results(path: Path) -> ScanResults:
    """Records of one scan output file: a ``{"manifest", "records"}`` document or one record per line.

    An empty file is an empty JSONL output (a shard with no files). Raises ``UsageError`` for a file that
    cannot be read or is not scan output; a JSONL file's torn last line (an interrupted run) is left out
    and counted in ``skipped_lines``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:  # apn always writes UTF-8
        raise UsageError(f"{path} is not scan output (not UTF-8 text)") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("records"), list):
        manifest = document.get("manifest")
        records = [_checked(record, path, index + 1) for index, record in enumerate(document["records"])]
        return ScanResults(records, [manifest] if isinstance(manifest, dict) else [], [str(path)])
    return _load_lines(text, path)


def _load_lines(text: str, path: Path) -> ScanResults:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    records, skipped = [], 0
    for position, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if position == len(lines) - 1 and not text.endswith("\n") and records:
                skipped += 1  # the last line of an interrupted run
                continue
            raise UsageError(f"{path}:{number}: not scan output (JSON or JSONL): {one_line(exc)}") from exc
        records.append(_checked(record, path, number))
    return ScanResults(records, [], [str(path)], skipped)


def _checked(record: Any, path: Path, number: int) -> dict[str, Any]:
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        raise UsageError(f"{path}: record {number} is not a scan record (no \"path\")")
    return record


def model_key(record: dict[str, Any]) -> tuple[str | None, float | None]:
    """What must agree for records to be compared: the checkpoint's sha256 and the threshold used."""
    return (record.get("model") or {}).get("sha256"), record.get("threshold")


def merge_results(parts: Iterable[ScanResults]) -> ScanResults:
    """One result set from several (e.g. the shards of one scan), records sorted by ``path``.

    Refuses (``UsageError``) parts scored by different models or thresholds, and a path that appears in
    two parts (shards run twice or with different arguments). The sort is stable, so a merge of the
    shards of a scan equals that scan's records sorted by path.
    """
    parts = list(parts)
    _check_one_model(parts)
    _check_disjoint(parts)
    records = sorted((record for part in parts for record in part.records), key=lambda record: record["path"])
    return ScanResults(records, [m for part in parts for m in part.manifests],
                       [s for part in parts for s in part.sources], sum(part.skipped_lines for part in parts))


def _check_one_model(parts: list[ScanResults]) -> None:
    seen: dict[tuple[str | None, float | None], str] = {}
    for part in parts:
        for record in part.records:
            key = model_key(record)
            if key not in seen:
                seen[key] = part.sources[0] if part.sources else "?"
            if len(seen) > 1:
                (key_a, file_a), (key_b, file_b) = list(seen.items())[:2]
                raise UsageError(f"refusing to mix models: {file_a} has {_describe(key_a)}, "
                                 f"{file_b} has {_describe(key_b)}")


def _describe(key: tuple[str | None, float | None]) -> str:
    sha256, threshold = key
    return f"model sha256 {(sha256 or 'unknown')[:12]}… at threshold {threshold}"


def _check_disjoint(parts: list[ScanResults]) -> None:
    owner: dict[str, int] = {}
    for index, part in enumerate(parts):
        for record in part.records:
            first = owner.setdefault(record["path"], index)
            if first != index:
                raise UsageError(f"{record['path']} is in both {parts[first].sources[0]} and "
                                 f"{part.sources[0]}: were the shards run twice, or with other arguments?")
