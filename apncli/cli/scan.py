"""``apn scan``: score files and folders, one record per candidate file, machine output on stdout."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from apncli import __version__
from apncli.cli import common, outfile, output
from apncli.cli.inputs import gather, preflight
from apncli.cli.summary import Tally, resume_hint, summary_line
from apncli.data.discover import Survey
from apncli.data.images import describe_os_error
from apncli.engine.verdicts import AI_GENERATED
from apncli.errors import UsageError, one_line
from apncli.report import HtmlReportWriter

if TYPE_CHECKING:  # the engine pulls in torch: import it only when a scan really runs (fast --help)
    from apncli.engine import Detector, ScanOptions, ScanRecord

SCAN_HELP = f"""Score images: probability that each was made by an AI generator, and a verdict.

Machine output (--json, --jsonl, --csv) goes to stdout or --out; progress and errors go to stderr.
{common.EXIT_CODES_HELP}"""


def register(app: typer.Typer) -> None:
    app.command("scan", help=SCAN_HELP)(scan_command)


def scan_command(
    paths: list[str] | None = typer.Argument(
        None, help="Image files and/or folders; - reads the list of paths from stdin.", show_default=False),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    files_from: Path | None = typer.Option(
        None, "--files-from", help="Also scan the paths listed in this file, one per line (- for stdin)."),
    null_separated: bool = typer.Option(
        False, "-0", "--null", help="Path lists are NUL-separated (find -print0), not one per line."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document {manifest, records}."),
    as_jsonl: bool = typer.Option(False, "--jsonl", help="One JSON record per line, streamed."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV with a header row."),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, show_default=False,
        help="Override the calibrated threshold: no inconclusive score band, but low-signal images stay "
             "inconclusive \\[default: the checkpoint's]."),
    weights: str | None = typer.Option(None, "--weights", "-w", help=common.WEIGHTS_HELP, show_default=False),
    device: str | None = typer.Option(None, "--device", help=common.DEVICE_HELP + " \\[default: auto]",
                                      show_default=False),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, max=4096, show_default=False,
        help="Crops per forward pass \\[default: 16 on GPU; on CPU 16 crops of 128 px, 5 of 224 px]."),
    tiles: int | None = typer.Option(
        None, "--tiles", min=1, max=64, show_default=False,
        help="Crops scored per large image; more is thorougher and slower "
             "\\[default: the checkpoint's, 4 for apn-v2]."),
    workers: int = typer.Option(2, "--workers", min=1, max=64, help="Decoding threads."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write records to this file, not stdout. Without --json/--jsonl/--csv its "
        "suffix picks the format: .json a JSON document, .csv CSV, any other JSONL; a format flag that "
        "contradicts a .json, .jsonl or .csv suffix is refused."),
    force: bool = typer.Option(False, "--force", help="Allow --out to overwrite an existing file."),
    resume: bool = typer.Option(False, "--resume", help="Append to --out, skipping files already in it."),
    manifest: Path | None = typer.Option(None, "--manifest", help="Also write the run manifest (JSON) here."),
    provenance: bool = typer.Option(True, "--provenance/--no-provenance",
                                    help="Report metadata the file declares (C2PA, IPTC, EXIF, PNG text)."),
    trust_anchors: Path | None = typer.Option(
        None, "--c2pa-trust-anchors", help="PEM bundle of root certificates whose C2PA signers are trusted."),
    explain_dir: Path | None = typer.Option(
        None, "--explain-dir", help="Write an explanation figure (PNG) for every flagged image here."),
    decode_timeout: float = typer.Option(
        60.0, "--decode-timeout", min=0.1, help="Seconds before a stuck decode becomes an error record."),
    shard: str | None = typer.Option(
        None, "--shard", metavar="K/N", help="Scan only part K of N (a stable split by path; job arrays)."),
    html: Path | None = typer.Option(None, "--html", help="Also write an HTML report (see `apn report`)."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No loading message, progress bar or end-of-run summary on stderr."),
) -> int:
    from apncli.data.discover import Shard

    fmt = _choose_format(as_json, as_jsonl, as_csv, out)
    inputs = gather(paths or [], files_from, null_separated)
    found = preflight(inputs, recursive)  # before the model: a typo must not cost a model load
    input_paths = [Path(p) for p in inputs]
    if resume and out is None:
        raise UsageError("--resume needs --out FILE in JSONL or CSV format")
    _refuse_shared_outputs({"--out": out, "--html": html, "--manifest": manifest})
    if html is not None:
        if resume:
            raise UsageError("--html with --resume would leave out the earlier records; "
                             "run `apn report` on the --out file instead")
        outfile.prepare_target(html, input_paths, force=force, option="--html")
    if manifest is not None:
        outfile.prepare_target(manifest, input_paths, force=force, option="--manifest")
    if explain_dir is not None:
        _prepare_explain_dir(explain_dir, input_paths)
    anchors = _read_trust_anchors(trust_anchors)
    part = None if shard is None else Shard.parse(shard)
    columns = output.csv_columns(figures=explain_dir is not None)
    with _claim(out, fmt, input_paths, force=force, resume=resume, columns=columns) as target:
        detector = _load_detector(weights, device, tiles, quiet)
        from apncli.engine import ScanOptions

        prior = target.prior if target is not None else outfile.Prior()
        if target is not None:
            rule = detector.info.threshold if threshold is None else threshold
            target.check_rule(detector.info.sha256, rule, force=force)
        options = ScanOptions(recursive=recursive, batch_size=batch_size, workers=workers,
                              threshold=threshold, decode_timeout_s=decode_timeout,
                              skip=_skipper(prior, explain_dir),
                              annotate=_provenance_annotator(anchors) if provenance else None,
                              shard=part)
        run_manifest = build_manifest(detector, options, provenance)
        if manifest is not None:
            outfile.write_new_file(manifest, output.dumps(run_manifest, indent=2) + "\n", force=force)
        stream = target.text_stream() if target is not None else sys.stdout
        writer = _make_writer(fmt, stream, run_manifest, provenance, columns)
        if html is not None:
            save = functools.partial(outfile.write_new_file, html, force=force)  # whole, or not at all
            page = HtmlReportWriter(save, html.parent, run_manifest)
            writer = output.TeeWriter(writer, page)
        tally = Tally()
        total = sum(map(options.wants, found.paths)) if found.complete else None
        report = _Report(tally, out, fmt, total, found, quiet, kept=prior.records)
        try:
            _run(detector, inputs, options, writer, _figure_maker(detector, explain_dir),
                 tally, total, quiet, where=str(out) if out is not None else "stdout")
        except (KeyboardInterrupt, common.Terminated):
            report.show(interrupted=True)
            raise
    report.show()
    return _exit_code(tally, prior)


def _load_detector(weights: str | None, device: str | None, tiles: int | None, quiet: bool) -> Detector:
    """Load the detector, saying on a terminal what the seconds of silence are (torch, then the weights)."""
    console = common.stderr_console
    show = console.is_terminal and not quiet
    status = console.status(f"loading the detector ({weights or 'default'}): torch and the weights...")
    started = time.monotonic()
    with status if show else contextlib.nullcontext():
        from apncli.engine import Detector

        detector = Detector.load(weights, device=common.parse_device(device), tiles=tiles)
    if show:
        console.print(f"[dim]detector {escape(detector.info.name)} on {detector.device}, "
                      f"loaded in {time.monotonic() - started:.1f} s[/]")
    return detector


@dataclass
class _Report:
    """The end-of-run summary on stderr, with the counts in every output format (also under a table)."""

    tally: Tally
    out: Path | None
    fmt: str
    total: int | None
    found: Survey
    quiet: bool
    kept: int = 0  # records a resumed --out file already held

    def show(self, interrupted: bool = False) -> None:
        if self.quiet:
            return
        console = common.stderr_console
        console.print(summary_line(self.tally, out=self.out, total=self.total, interrupted=interrupted,
                                   skipped_folders=self.found.skipped_folders, kept=self.kept), markup=False)
        if interrupted and self.out is not None and self.fmt in outfile.RESUMABLE_FORMATS:
            console.print(resume_hint(sys.argv[1:]), markup=False)


def _choose_format(as_json: bool, as_jsonl: bool, as_csv: bool, out: Path | None) -> str:
    """The format flag; else ``--out``'s suffix (.json, .jsonl, .csv; any other: JSONL); else the table.

    Raises ``UsageError`` for two flags, or a flag that contradicts the suffix (``x.csv --json``).
    """
    chosen = [name for name, flag in (("json", as_json), ("jsonl", as_jsonl), ("csv", as_csv)) if flag]
    if len(chosen) > 1:
        raise UsageError("choose at most one of --json, --jsonl, --csv")
    flag = chosen[0] if chosen else None
    if out is not None:
        return outfile.format_for(out, flag)
    return flag or "table"


@contextlib.contextmanager
def _claim(out: Path | None, fmt: str, inputs: list[Path], *, force: bool, resume: bool,
           columns: tuple[str, ...]) -> Iterator[outfile.ScanOutput | None]:
    """``--out`` claimed and locked for the whole run (see ``outfile.claim``); nothing for stdout."""
    if out is None:
        yield None
        return
    with outfile.claim(out, fmt, inputs, force=force, resume=resume, columns=columns) as target:
        yield target


def _skipper(prior: outfile.Prior, explain_dir: Path | None) -> Callable[[Path], bool] | None:
    """Files not to scan: those a resumed output already records, and apn's own ``--explain-dir`` figures."""
    done = prior.skip()
    if explain_dir is None:
        return done
    figures = Path(os.path.realpath(explain_dir))

    def skip(path: Path) -> bool:
        return Path(os.path.realpath(path)).is_relative_to(figures) or (done is not None and done(path))

    return skip


def _make_writer(fmt: str, stream: IO[str], manifest: dict[str, Any], provenance: bool,
                 columns: tuple[str, ...]) -> output.RecordWriter:
    if fmt == "jsonl":
        return output.JsonlWriter(stream)
    if fmt == "json":
        return output.JsonWriter(stream, manifest)
    if fmt == "csv":
        return output.CsvWriter(stream, write_header=stream is sys.stdout or stream.tell() == 0,
                                columns=columns)
    from rich.console import Console

    return output.TableWriter(Console(file=stream), show_provenance=provenance)


def _run(detector: Detector, paths: list[str], options: ScanOptions, writer: output.RecordWriter,
         explain: Callable[[ScanRecord], None] | None, tally: Tally, total: int | None, quiet: bool,
         where: str) -> None:
    """Write every record as it comes; ``close`` in ``finally`` keeps the output valid on Ctrl-C.

    An output that cannot be written (disk full, closed pipe) is one ``OutputError`` naming ``where``.
    """
    with outfile.output_errors(where):
        _write_records(detector, paths, options, writer, explain, tally, total, quiet)


def _write_records(detector: Detector, paths: list[str], options: ScanOptions, writer: output.RecordWriter,
                   explain: Callable[[ScanRecord], None] | None, tally: Tally, total: int | None,
                   quiet: bool) -> None:
    from apncli.engine import scan

    progress = Progress(SpinnerColumn(), TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[flagged]} flagged"),
                        console=common.stderr_console, transient=True,
                        disable=quiet or not common.stderr_console.is_terminal)
    try:
        with progress:
            task = progress.add_task("scan", total=total, flagged=0)
            for record in scan(detector, paths, options):
                if explain is not None:
                    explain(record)
                result = record.to_dict()
                writer.write(result)
                tally.add(result)
                if record.error is not None:
                    common.error(f"{record.path}: {record.error}")
                progress.update(task, advance=1, flagged=tally.flagged)
    finally:
        writer.close()


def _refuse_shared_outputs(targets: dict[str, Path | None]) -> None:
    """Each output of one run is its own file: one written over another would lose the results."""
    given = [(option, path) for option, path in targets.items() if path is not None]
    for index, (option, path) in enumerate(given):
        for other, other_path in given[index + 1:]:
            if common.same_file(path, other_path):
                raise UsageError(f"{option} and {other} name the same file {path}; give each its own")


def _exit_code(tally: Tally, prior: outfile.Prior) -> int:
    """The exit code of the whole output: this run's records plus those a resumed file already held."""
    earlier = Counter({AI_GENERATED: prior.flagged, "earlier": prior.scored - prior.flagged})
    whole = Tally(verdicts=tally.verdicts + earlier, unreadable=tally.unreadable + prior.errors,
                  declared_ai=tally.declared_ai + prior.declared_ai)
    return whole.exit_code()


def _figure_maker(detector: Detector, explain_dir: Path | None) -> Callable[[ScanRecord], None] | None:
    """For ``--explain-dir``: a figure per flagged image, named so different inputs never collide.

    Every record gets ``output.FIGURE_FIELDS``: the figure's path, or why it could not be drawn (a flagged
    image), else ``null``.
    """
    if explain_dir is None:
        return None
    from apncli.data.images import decode_image
    from apncli.explain import explain_image, figure_name_for, render_figure

    def explain(record: ScanRecord) -> None:
        record.extra.update(dict.fromkeys(output.FIGURE_FIELDS))
        if record.verdict != AI_GENERATED:
            return
        path = record.source if record.source is not None else Path(record.path)
        try:
            pixels = decode_image(path).pixels
            figure = explain_dir / figure_name_for(path)
            render_figure(explain_image(detector, pixels, source=record.path), figure)
            record.extra["figure"] = str(figure)
        except Exception as exc:  # a figure is a bonus: its failure must not cost the record
            record.extra["figure_error"] = one_line(f"{type(exc).__name__}: {exc}")

    return explain


def _prepare_explain_dir(explain_dir: Path, inputs: list[Path]) -> None:
    """Before the model loads: ``--explain-dir`` must be (or become) a folder that is no input."""
    if explain_dir.exists() and not explain_dir.is_dir():
        raise UsageError(f"--explain-dir {explain_dir} is not a folder")
    common.refuse_input_overwrite(explain_dir, inputs)
    explain_dir.mkdir(parents=True, exist_ok=True)


def build_manifest(detector: Detector, options: ScanOptions, provenance: bool) -> dict[str, Any]:
    """What a report must cite to be reproducible: tool version, exact model, device, decision rule."""
    return {
        "apn_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": detector.describe(),
        "threshold_override": options.threshold,
        "recursive": options.recursive,
        "provenance": provenance,
        "argv": sys.argv[1:],
    }


def _provenance_annotator(anchors: str | None) -> Callable[[Path], dict[str, Any]]:
    """Metadata evidence beside the pixel verdict; never part of ``p_ai``; ``anchors``: a PEM bundle."""
    from apncli.provenance import read_provenance

    def annotate(path: Path) -> dict[str, Any]:
        return {"provenance": read_provenance(path, c2pa_trust_anchors=anchors).to_dict()}

    return annotate


def _read_trust_anchors(path: Path | None) -> str | None:
    """Check the PEM bundle once, before the model loads, instead of failing on every record.

    Raises ``UsageError`` in one line: ``--c2pa-trust-anchors x.pem: no such file or directory``.
    """
    if path is None:
        return None
    try:
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise UsageError(f"--c2pa-trust-anchors {path}: {describe_os_error(exc)}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--c2pa-trust-anchors {path} is not a PEM file (not ASCII text)") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise UsageError(f"--c2pa-trust-anchors {path} holds no PEM certificate")
    return text
