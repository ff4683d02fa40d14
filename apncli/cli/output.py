"""Result writers: a Rich table for people, JSON / JSONL / CSV for scripts.

Every writer streams: it writes each record when it arrives and flushes, so a pipeline sees results at
once, memory stays flat, and an interrupted run leaves a valid file (``close`` is called from ``finally``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from typing import IO, Any, Protocol

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from apncli.cli.summary import Tally, declares_ai
from apncli.errors import printable

FORMATS = ("table", "json", "jsonl", "csv")

CSV_COLUMNS = (
    "path", "p_ai", "verdict", "threshold", "model_name", "model_sha256", "width", "height", "crops",
    "analysed_fraction", "padded", "textured_fraction", "low_signal", "has_alpha", "transparent_fraction",
    "provenance_summary", "error",
)
#: Record keys (and CSV columns) of a scan with ``--explain-dir``: the figure written for a flagged image,
#: or why none could be; both ``null`` otherwise.
FIGURE_FIELDS = ("figure", "figure_error")


def csv_columns(figures: bool) -> tuple[str, ...]:
    """The CSV header: ``CSV_COLUMNS``, then ``FIGURE_FIELDS`` when the scan draws figures."""
    return CSV_COLUMNS + FIGURE_FIELDS if figures else CSV_COLUMNS

VERDICT_STYLES = {"ai-generated": "bold red", "real": "green", "inconclusive": "yellow", None: "dim"}


class RecordWriter(Protocol):
    """What the scan command needs from an output format."""

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf (invalid JSON) by null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Strict JSON (no NaN) that keeps non-ASCII paths readable."""
    return json.dumps(_json_safe(value), ensure_ascii=False, indent=indent, allow_nan=False)


class JsonlWriter:
    """One JSON object per line, flushed per record so ``tail -f`` and pipes see it immediately."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(dumps(record) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonWriter:
    """One JSON document ``{"manifest": ..., "records": [...]}``, written incrementally."""

    def __init__(self, stream: IO[str], manifest: dict[str, Any]) -> None:
        self.stream = stream
        self.count = 0
        self.stream.write('{"manifest": ' + dumps(manifest) + ', "records": [')
        self.stream.flush()

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(("," if self.count else "") + "\n  " + dumps(record))
        self.stream.flush()
        self.count += 1

    def close(self) -> None:
        self.stream.write("\n]}\n")
        self.stream.flush()


class CsvWriter:
    """Flat rows for spreadsheets; nested fields become ``model_name``, ``provenance_summary``…

    ``columns``: ``CSV_COLUMNS`` or, for a scan with ``--explain-dir``, ``csv_columns(figures=True)``.
    """

    def __init__(self, stream: IO[str], write_header: bool = True,
                 columns: tuple[str, ...] = CSV_COLUMNS) -> None:
        self.stream = stream
        self.columns = columns
        self.writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        if write_header:
            self.writer.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        model = record.get("model") or {}
        provenance = record.get("provenance") or {}
        row = {**record, "model_name": model.get("name"), "model_sha256": model.get("sha256"),
               "provenance_summary": provenance.get("summary")}
        self.writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in self.columns})
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class TeeWriter:
    """The same records to several writers, e.g. JSONL on stdout and ``--html`` at the end."""

    def __init__(self, *writers: RecordWriter) -> None:
        self.writers = writers

    def write(self, record: dict[str, Any]) -> None:
        for writer in self.writers:
            writer.write(record)

    def close(self) -> None:
        """Close every writer, even when one fails (the first failure is raised afterwards)."""
        failure: BaseException | None = None
        for writer in self.writers:
            try:
                writer.close()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


class TableWriter:
    """A Rich table printed at the end (people read it once the scan is done), counts in its caption."""

    def __init__(self, console: Console, show_provenance: bool) -> None:
        self.console = console
        self.show_provenance = show_provenance
        self.rows: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.rows.append(record)

    def close(self) -> None:
        tally = Tally()
        for row in self.rows:
            tally.add(row)
        table = render_table(self.rows, self.show_provenance)
        table.caption, table.caption_justify = tally.counts_text(), "left"
        # Never wrap a path inside its cell: a table wider than the terminal is printed at its own width
        # (the terminal soft-wraps the line, and a path stays one piece of text to copy).
        needed = Measurement.get(self.console, self.console.options.update_width(1 << 16), table).maximum
        if needed > self.console.width:
            self.console.width = needed
        self.console.print(table, crop=False)


def _percent(fraction: float | None) -> str:
    """0.0061 → '0.6%', 1.0 → '100%': enough digits to tell a whole thumbnail from a sliver of a photo."""
    if fraction is None:
        return "—"
    return f"{fraction:.0%}" if fraction >= 0.1 else f"{fraction:.1%}"


def render_table(records: Iterable[dict[str, Any]], show_provenance: bool) -> Table:
    """Verdict, probability, the share of the image's pixels the verdict rests on ("analysed") and file for
    each record; errors shown in place of a score. A "low signal" column (why an image is too poor for a
    verdict) appears when some image is.

    Every cell is plain text: names and messages from files are never parsed as markup, and their control
    characters are shown escaped. A file whose metadata declares AI generation says so next to its verdict,
    whatever the pixels say.
    """
    records = list(records)
    low_signal = any(record.get("low_signal") for record in records)
    table = Table(show_lines=False, header_style="bold")
    table.add_column("verdict", no_wrap=True)
    table.add_column("p(AI)", justify="right", no_wrap=True)
    table.add_column("analysed", justify="right", no_wrap=True)
    if low_signal:
        table.add_column("low signal", overflow="fold", max_width=40)
    if show_provenance:
        table.add_column("declared", no_wrap=True)
    table.add_column("file", no_wrap=True)
    for record in records:
        verdict = record.get("verdict")
        cell = Text(verdict or "error", style=VERDICT_STYLES.get(verdict, ""))
        if declares_ai(record):
            cell.append(" (declared AI)", style="bold magenta")
        cells = [cell, Text("—" if record.get("p_ai") is None else f"{record['p_ai']:.3f}"),
                 Text(_percent(record.get("analysed_fraction")))]
        if low_signal:
            cells.append(Text(printable(record.get("low_signal") or "—")))
        if show_provenance:
            cells.append(Text(printable((record.get("provenance") or {}).get("summary") or "—")))
        label = Text(printable(record["path"]))
        if record.get("error"):
            label.append(f"  ({printable(record['error'])})", style="dim")
        cells.append(label)
        table.add_row(*cells)
    return table
