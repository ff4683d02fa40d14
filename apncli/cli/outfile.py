"""Result files: claimed before the model loads, locked while written, resumed without losing or lying.

A scan's ``--out`` file is created exclusively (or, with ``--force``/``--resume``, opened) and locked
(``flock``) at check time, so two runs can never write one file. ``--resume`` reads the file it holds:
it drops a torn last record *before* deciding what is done (so the torn file is scanned again, once),
refuses a file of another format, garbage or malformed lines, and knows which model and threshold wrote
each record, so a resumed run cannot silently mix decision rules. Every output path (``--out``,
``--manifest``, ``explain --out``) gets one behaviour: missing parent folders are created, a folder or an
input is refused, an existing file needs ``--force``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from apncli.cli import common
from apncli.cli.output import CSV_COLUMNS, FIGURE_FIELDS, csv_columns
from apncli.cli.summary import DECLARED_AI, declares_ai
from apncli.data.discover import display_path
from apncli.data.images import describe_os_error
from apncli.engine.verdicts import AI_GENERATED
from apncli.errors import OutputError, UsageError, one_line
from apncli.files import give_default_mode

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; exclusive creation still protects new files
    fcntl = None  # type: ignore[assignment]

#: Output formats ``--resume`` can continue (a JSON document is closed when the run ends).
RESUMABLE_FORMATS = ("jsonl", "csv")
#: What ``--out`` can hold; ``format_for`` picks one from the flag or the file name.
FILE_FORMATS = ("json", "jsonl", "csv")

#: A record line is a few KiB at most; a longer "line" is not apn output, and is not read into memory.
MAX_LINE_BYTES = 4 << 20
_JSONL_START = b'{"path": '
_RESUME_HINT = "pass --force to overwrite it or --resume to continue it"


def format_for(out: Path, flag: str | None, writable: Sequence[str] = FILE_FORMATS) -> str:
    """The format to write ``out`` in: the format ``flag`` (json, jsonl or csv), else the one the file's
    suffix names (.json, .jsonl, .csv, any case), else JSONL.

    Raises ``UsageError`` (one line) when the suffix names another format than the flag, or one this
    command cannot write (``writable``): ``x.csv --json`` would be JSON in a file every tool reads as CSV.
    """
    suffix = out.suffix.lower().lstrip(".")
    named = suffix if suffix in FILE_FORMATS else None
    if flag is not None and named not in (None, flag):
        raise UsageError(f"--out {out} names a {named.upper()} file but --{flag} writes {flag.upper()}; "
                         "change the file name or drop the flag")
    if named is not None and named not in writable:
        kinds = " or ".join(k.upper() for k in writable)
        raise UsageError(f"--out {out} names a {named.upper()} file, but this command writes {kinds}; "
                         "change the file name")
    return flag or named or "jsonl"


def prepare_target(path: Path, inputs: Sequence[Path], *, force: bool, option: str,
                   hint: str = "pass --force to overwrite it") -> None:
    """Check an output path before any work: not a folder, not an input, no file unless ``force``.

    Missing parent folders are created. Raises ``UsageError`` (one line) otherwise.
    """
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")
    common.refuse_to_clobber(path, inputs, force=force, hint=hint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create its folder: {describe_os_error(exc)}") from None


def write_new_file(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` whole or not at all (a failed write never leaves a 0-byte file behind).

    Without ``force`` an existing file is never replaced, even one created since the check. Raises
    ``OutputError`` when the file cannot be written (disk full, read-only), ``UsageError`` when it exists.
    """
    if force and path.exists() and not path.is_file():  # /dev/stdout and the like: written in place
        with output_errors(path), path.open("w", encoding="utf-8") as handle:
            handle.write(text)
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        give_default_mode(tmp)
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic and exclusive: fails if the name exists
    except FileExistsError:
        raise UsageError(f"{path} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def output_errors(where: object) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``where`` into one ``OutputError`` line."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {where}: {describe_os_error(exc)}") from None


@dataclass
class Prior:
    """What an output file held before this run: the files it recorded and how they came out."""

    done: set[str] = field(default_factory=set)  # resolved paths (display form) of every recorded file
    flagged: int = 0
    errors: int = 0
    scored: int = 0
    rules: set[tuple[str | None, float | None]] = field(default_factory=set)  # (model sha256, threshold)
    relative: int = 0  # successful records with a relative path
    relative_found: bool = False  # … of which at least one exists from the current folder
    declared_ai: int = 0  # records whose file's metadata declares AI generation
    figures: set[bool] = field(default_factory=set)  # JSONL: whether records carry the --explain-dir keys

    def add(self, path: str, verdict: str | None, error: str | None, sha256: str | None,
            threshold: float | None, declared_ai: bool = False) -> None:
        self.done.add(resolved_key(path))
        self.rules.add((sha256, threshold))
        self.declared_ai += declared_ai
        if error:
            self.errors += 1
            return
        self.scored += 1
        self.flagged += verdict == AI_GENERATED
        if not os.path.isabs(path):
            self.relative += 1
            self.relative_found = self.relative_found or os.path.lexists(path)

    @property
    def records(self) -> int:
        """How many records the file held (scored and error records alike)."""
        return self.scored + self.errors

    def skip(self) -> Callable[[Path], bool] | None:
        """For ``ScanOptions.skip``: whether a candidate file is already recorded (by resolved path)."""
        return (lambda path: resolved_key(path) in self.done) if self.done else None


def resolved_key(path: str | os.PathLike[str]) -> str:
    """The identity of a recorded file: its absolute path with links resolved, in display form."""
    return display_path(os.path.realpath(path))


class ScanOutput:
    """A claimed ``--out`` file: open, locked, and (with ``--resume``) read up to its last whole record.

    ``columns``: the CSV header this run writes (a resumed CSV file must have the same).
    """

    def __init__(self, path: Path, fmt: str, handle: BinaryIO, *, created: bool, resume: bool,
                 columns: tuple[str, ...] = CSV_COLUMNS) -> None:
        self.path, self.fmt, self.handle, self.created, self.resume = path, fmt, handle, created, resume
        self.columns = columns
        self.prior = Prior()
        self.end = 0  # byte offset after the last whole record

    def check_rule(self, sha256: str | None, threshold: float, *, force: bool) -> None:
        """Refuse to append to records of another model or threshold unless ``force``."""
        others = sorted((str(s), t) for s, t in self.prior.rules if (s, t) != (sha256, threshold))
        if others and not force:
            sha, thr = others[0]
            raise UsageError(
                f"{self.path} holds records of model sha256 {sha[:12]}… at threshold {thr}; this run uses "
                f"{(sha256 or 'unknown')[:12]}… at threshold {threshold}. Resume with the same --weights and "
                "--threshold, or pass --force to mix them")

    def text_stream(self) -> IO[str]:
        """The file as a text stream positioned for writing: appended after the last whole record on
        ``--resume`` (a torn tail is cut off), else emptied (only now, so a failed start loses nothing)."""
        with output_errors(self.path):
            self.handle.seek(self.end)
            self.handle.truncate()
        return io.TextIOWrapper(self.handle, encoding="utf-8", newline="" if self.fmt == "csv" else None,
                                write_through=True)

    def _read_prior(self) -> None:
        self.handle.seek(0)
        if self.fmt == "csv":
            self.end = _read_csv(self.handle, self.path, self.prior, self.columns)
        else:
            self.end = _read_jsonl(self.handle, self.path, self.prior)
            drawn = FIGURE_FIELDS[0] in self.columns
            if self.prior.figures - {drawn}:  # records with(out) figure keys next to ones without(with)
                raise _explain_dir_mismatch(self.path, written_with=not drawn)
        if self.prior.relative and not self.prior.relative_found:
            raise UsageError(f"no file that {self.path} records by relative path ({self.prior.relative}) is "
                             "found from this folder; run --resume from the folder the scan started in")


@contextlib.contextmanager
def claim(path: Path, fmt: str, inputs: Sequence[Path], *, force: bool, resume: bool,
          columns: tuple[str, ...] = CSV_COLUMNS) -> Iterator[ScanOutput]:
    """Claim ``path`` for this run (before the model loads) and hold it locked until the run ends.

    A new file is created exclusively; ``--force`` opens an existing one (emptied only when writing
    starts), ``--resume`` reads what it holds (a CSV file must have the header ``columns``). If the run
    fails before writing anything, a file this call created is removed again, so a rerun is not refused.
    Raises ``UsageError`` in one line.
    """
    if resume and fmt not in RESUMABLE_FORMATS:
        raise UsageError("--resume needs --out FILE in JSONL or CSV format")
    prepare_target(path, inputs, force=force or resume, option="--out", hint=_RESUME_HINT)
    handle, created = _open_locked(path, exclusive=not (force or resume))
    output = ScanOutput(path, fmt, handle, created=created, resume=resume, columns=columns)
    try:
        if resume:
            output._read_prior()
        yield output
    except BaseException:
        with contextlib.suppress(OSError):
            if created and os.fstat(handle.fileno()).st_size == 0:
                path.unlink()
        raise
    finally:
        with contextlib.suppress(OSError):
            handle.close()


def _open_locked(path: Path, *, exclusive: bool) -> tuple[BinaryIO, bool]:
    flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if exclusive else 0) | getattr(os, "O_BINARY", 0)
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise UsageError(f"{path} exists; {_RESUME_HINT}") from None
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot open it for writing: {describe_os_error(exc)}") from None
    handle = os.fdopen(fd, "r+b")
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise UsageError(f"{path} is being written by another apn run; wait for it to finish") from None
    return handle, not existed


# --- reading what a previous run wrote --------------------------------------------------------------


def _lines(handle: BinaryIO, path: Path) -> Iterator[bytes]:
    """Lines of ``handle`` (ends kept); a line too long to be a record is refused, not read whole."""
    while line := handle.readline(MAX_LINE_BYTES):
        if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
            raise _not_ours(path, f"it holds a line over {MAX_LINE_BYTES >> 20} MiB")
        yield line


def _not_ours(path: Path, why: str) -> UsageError:
    return UsageError(f"cannot resume {path}: it {why}; --resume continues only a file written by apn scan "
                      "--jsonl or --csv")


def _read_jsonl(handle: BinaryIO, path: Path, prior: Prior) -> int:
    """Record every whole JSONL line in ``prior``; return the offset after the last one."""
    end = 0
    for number, line in enumerate(_lines(handle, path), 1):
        if not line.endswith(b"\n"):  # torn by a kill or a full disk: dropped, so its file is rescanned
            if not (_JSONL_START.startswith(line) or line.startswith(_JSONL_START)):
                raise _not_ours(path, "its last line is not an apn record")
            break
        if line.strip():
            _add_json_record(prior, line, path, number)
        end += len(line)
    return end


def _add_json_record(prior: Prior, line: bytes, path: Path, number: int) -> None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise _not_ours(path, f"line {number} is not JSON ({one_line(exc, limit=80)})") from None
    if not isinstance(record, dict):
        raise _not_ours(path, f"line {number} is not a JSON object")
    model = record.get("model")
    prior.figures.add(FIGURE_FIELDS[0] in record)
    _add(prior, path, number, record.get("path"), record.get("verdict"), record.get("error"),
         model.get("sha256") if isinstance(model, dict) else None, record.get("threshold"),
         isinstance(record.get("provenance"), dict) and declares_ai(record))


def _read_csv(handle: BinaryIO, path: Path, prior: Prior, columns: tuple[str, ...]) -> int:
    """Record every whole CSV row in ``prior``; return the offset after the last one.

    The header must be ``columns``, the one this run writes (with or without the figure columns).

    Rows are parsed as the writer wrote them (``newline=""`` semantics, so a ``\\r`` or ``\\n`` inside a
    quoted file name stays part of the name); a row is whole when its last line ends in a newline.
    """
    state = {"consumed": 0, "eof": False, "last": b""}

    def text_lines() -> Iterator[str]:
        for line in _lines(handle, path):
            state["consumed"] += len(line)
            state["last"] = line
            yield line.decode("utf-8", errors="surrogateescape")
        state["eof"] = True

    reader = csv.reader(text_lines(), strict=True)
    end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return end
        except csv.Error as exc:
            if state["eof"]:
                return end  # a quoted field cut short by the end of the file: torn
            raise _not_ours(path, f"row {reader.line_num} is not valid CSV ({one_line(exc)})") from None
        if not state["last"].endswith(b"\n"):  # torn last row
            if end == 0 and not (",".join(columns) + "\r\n").encode().startswith(state["last"]):
                raise _not_ours(path, "it does not start with apn's CSV header")
            return end
        if end == 0:
            _check_header(path, tuple(row), columns)
        elif len(row) != len(columns):
            raise _not_ours(path, f"row {reader.line_num} has {len(row)} fields, not {len(columns)}")
        else:
            values = dict(zip(columns, row, strict=True))
            _add(prior, path, reader.line_num, values["path"], values["verdict"] or None,
                 values["error"] or None, values["model_sha256"] or None, _number(values["threshold"]),
                 values["provenance_summary"] == DECLARED_AI)
        end = state["consumed"]


def _check_header(path: Path, header: tuple[str, ...], columns: tuple[str, ...]) -> None:
    """Refuse a CSV header other than ``columns``; one of apn's with(out) figures names ``--explain-dir``."""
    if header == columns:
        return
    for figures in (False, True):
        if header == csv_columns(figures):
            raise _explain_dir_mismatch(path, written_with=figures)
    raise _not_ours(path, f"its columns are {one_line(','.join(header), limit=120)!r}, not apn's")


def _explain_dir_mismatch(path: Path, written_with: bool) -> UsageError:
    """A resumed output's records must all have the ``--explain-dir`` keys, or none of them."""
    given = "with" if written_with else "without"
    return UsageError(f"cannot resume {path}: it was written {given} --explain-dir (its fields); resume "
                      f"{given} --explain-dir too")


def _number(text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _add(prior: Prior, path: Path, number: int, file: Any, verdict: Any, error: Any, sha256: Any,
         threshold: Any, declared_ai: bool) -> None:
    """Add one parsed record, refusing one whose fields have the wrong types (not apn output)."""
    if not isinstance(file, str) or not file:
        raise _not_ours(path, f"record {number} has no \"path\"")
    if not all(isinstance(v, str | None) for v in (verdict, error, sha256)) or not (
            threshold is None or (isinstance(threshold, int | float) and not isinstance(threshold, bool))):
        raise _not_ours(path, f"record {number} has fields of the wrong type")
    prior.add(file, verdict, error, sha256, None if threshold is None else float(threshold), declared_ai)
