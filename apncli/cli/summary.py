"""What a scan tells the person at the terminal: counts per verdict, where results went, the exit code.

Records are counted as they are written (``Tally.add`` takes the record dict, so a results file can be
tallied the same way); the one-line summary goes to stderr at the end of a run, also after Ctrl-C,
and the exit code is derived from the same counts.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apncli.cli.common import ExitCode
from apncli.engine.verdicts import AI_GENERATED, INCONCLUSIVE, REAL

#: ``provenance.summary`` of a file whose metadata says an AI generator made it (apncli.provenance).
DECLARED_AI = "declared-ai"
VERDICT_ORDER = (AI_GENERATED, REAL, INCONCLUSIVE)


def declares_ai(record: dict[str, Any]) -> bool:
    """The file's own metadata (C2PA, IPTC, EXIF, PNG text) declares AI generation."""
    return (record.get("provenance") or {}).get("summary") == DECLARED_AI


@dataclass
class Tally:
    """Counts of one run's records; ``started`` is a ``time.monotonic()`` reading."""

    verdicts: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0
    declared_ai: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, record: dict[str, Any]) -> None:
        if record.get("error") is not None:
            self.unreadable += 1
        else:
            self.verdicts[str(record.get("verdict"))] += 1
        if declares_ai(record):
            self.declared_ai += 1

    @property
    def files(self) -> int:
        return sum(self.verdicts.values()) + self.unreadable

    @property
    def flagged(self) -> int:
        return self.verdicts[AI_GENERATED]

    def counts_text(self) -> str:
        """"8 ai-generated, 42 real, 11 inconclusive, 2 unreadable, 1 declares AI in its metadata"."""
        parts = [f"{self.verdicts[v]} {v}" for v in VERDICT_ORDER if self.verdicts[v] or v != INCONCLUSIVE]
        if self.unreadable:
            parts.append(f"{self.unreadable} unreadable")
        if self.declared_ai:
            parts.append(f"{self.declared_ai} declare{'s' if self.declared_ai == 1 else ''} AI generation "
                         "in metadata")
        return ", ".join(parts)

    def exit_code(self) -> ExitCode:
        """1 flagged; 4 nothing flagged but metadata declares AI; 2 nothing readable; 3 some unreadable."""
        if self.flagged:
            return ExitCode.FLAGGED
        if self.declared_ai:
            return ExitCode.DECLARED_AI
        if self.unreadable and not sum(self.verdicts.values()):
            return ExitCode.ERROR
        if self.unreadable:
            return ExitCode.PARTIAL
        return ExitCode.OK


def summary_line(tally: Tally, *, out: Path | None, total: int | None = None, interrupted: bool = False,
                 skipped_folders: int = 0, kept: int = 0) -> str:
    """One line for stderr: "scanned 61 files in 9.8 s: 8 ai-generated, ... ; results in out.jsonl".

    ``kept``: records a resumed ``out`` already held, said after the time ("(7 already in out.jsonl: kept,
    not rescanned)"); the counts are of this run's files.
    """
    seconds = time.monotonic() - tally.started
    files = f"{tally.files} of {total}" if interrupted and total is not None else str(tally.files)
    verb = "interrupted after" if interrupted else "scanned"
    head = f"{verb} {files} file{'s' if tally.files != 1 else ''} in {seconds:.1f} s"
    if kept:
        head += f" ({kept} already in {out}: kept, not rescanned)"
    line = f"{head}: {tally.counts_text()}" if tally.files else head
    if skipped_folders:
        line += f"; {skipped_folders} sub-folder{'s' if skipped_folders != 1 else ''} not scanned (use -r)"
    return line + (f"; results in {out}" if out is not None else "")


def resume_hint(argv: Sequence[str]) -> str:
    """The command that continues an interrupted ``--out`` run: the same one, with --resume, no --force."""
    kept = [arg for arg in argv if arg not in ("--force", "--resume")]
    return "continue with: " + shlex.join(["apn", *kept, "--resume"])
