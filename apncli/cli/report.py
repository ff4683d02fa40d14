"""``apn report`` (an offline HTML page from scan output) and ``apn merge`` (shards into one output)."""

from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path
from typing import Any

import typer

from apncli import __version__
from apncli.cli import common, outfile, output
from apncli.errors import UsageError
from apncli.report import IMAGE_MODES, ScanResults, load_results, merge_results, render_report

REPORT_HELP = """Write one self-contained HTML page (no network needed) from scan output.

Give the --json or --jsonl output of `apn scan` (several files, e.g. shards, are merged first).

Run it in the folder the scan ran in, so the record paths find the images for the thumbnails.

Exit codes: 0 written; 2 usage error or input that is not scan output."""

MERGE_HELP = """Combine scan outputs (e.g. the parts of `apn scan --shard K/N`) into one, sorted by path.

Refuses outputs of different models or thresholds, and a file scanned in two parts.

Exit codes: 0 merged; 2 usage error, mixed models, or input that is not scan output."""

IMAGES_HELP = ("embed: small JPEG thumbnails and the figures inside the page (mail it on its own); "
               "link: relative links to the images (keep the page next to them); none: no images.")


def register(app: typer.Typer) -> None:
    app.command("report", help=REPORT_HELP)(report_command)
    app.command("merge", help=MERGE_HELP)(merge_command)


def report_command(
    inputs: list[Path] = typer.Argument(..., help="Scan output files (JSON or JSONL).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="The HTML file to write.", show_default=False),
    images: str = typer.Option("embed", "--images", help=IMAGES_HELP),
    force: bool = typer.Option(False, "--force", help="Allow --out to overwrite an existing file."),
) -> int:
    if images not in IMAGE_MODES:
        raise UsageError(f"--images must be one of {', '.join(IMAGE_MODES)}, not {images!r}")
    outfile.prepare_target(out, inputs, force=force, option="--out")
    results = _load(inputs)
    if images == "embed":
        common.stderr_console.print(f"making thumbnails of {len(results.records)} images…", markup=False)
    outfile.write_new_file(out, render_report(results, out.parent, images), force=force)
    common.stderr_console.print(f"wrote {len(results.records)} records to {out}", markup=False)
    return common.ExitCode.OK


def merge_command(
    inputs: list[Path] = typer.Argument(..., help="Scan output files (JSON or JSONL).", show_default=False),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout; a .json name "
                                    "gets a JSON document, other names JSONL (a .csv name is refused)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document (default: JSONL)."),
    force: bool = typer.Option(False, "--force", help="Allow --out to overwrite an existing file."),
) -> int:
    flag = "json" if as_json else None
    fmt = flag or "jsonl"
    if out is not None:
        fmt = outfile.format_for(out, flag, writable=("json", "jsonl"))
        outfile.prepare_target(out, inputs, force=force, option="--out")
    results = _load(inputs)
    fmt_json = fmt == "json"
    stream = sys.stdout if out is None else io.StringIO()
    writer = output.JsonWriter(stream, merged_manifest(results)) if fmt_json else output.JsonlWriter(stream)
    for record in results.records:
        writer.write(record)
    writer.close()
    if out is not None:  # the merged file appears whole or not at all
        outfile.write_new_file(out, stream.getvalue(), force=force)
    return common.ExitCode.OK


def _load(inputs: list[Path]) -> ScanResults:
    _refuse_repeats(inputs)
    results = merge_results(load_results(path) for path in inputs)
    if results.skipped_lines:
        common.error(f"left out {results.skipped_lines} torn last line(s) of interrupted output")
    return results


def _refuse_repeats(inputs: list[Path]) -> None:
    """One file given twice (by the same name, or another: ./a.jsonl, a link) is a slip of the command
    line, not a shard run twice: say so (``UsageError``) before reading anything."""
    for index, path in enumerate(inputs):
        earlier = next((other for other in inputs[:index] if common.same_file(path, other)), None)
        if earlier is not None:
            named = f"{path}" if str(earlier) == str(path) else f"{earlier} and {path} (one file)"
            raise UsageError(f"{named} given twice; give each scan output once")


def merged_manifest(results: ScanResults) -> dict[str, Any]:
    """The manifest of a merged output: the model of its parts, and when and how each part ran."""
    first = results.manifests[0] if results.manifests else {}
    return {
        "apn_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": first.get("model"),
        "threshold_override": first.get("threshold_override"),
        "merged_from": results.sources,
        "parts": [{key: m.get(key) for key in ("created", "argv", "apn_version")} for m in results.manifests],
    }
