"""``apn explain``: show why the detector said what it said about one image.

Flags are parsed and output paths checked here; everything shown is computed by ``apncli.explain`` from
one detector run (plus one rerun per band for occlusion).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from apncli.cli import common, outfile, output
from apncli.cli.common import ExitCode
from apncli.errors import ImageError, UsageError, printable

EXIT_CODES_HELP = ("Exit codes: 0 verdict real or inconclusive; 1 verdict ai-generated; 2 usage error, "
                   "unreadable image or run-level error; 130 interrupted.")
EXPLAIN_HELP = (
    "Explain one verdict: the frequency bands and image regions the network relied on.\n\n"
    "Prints the verdict, compact amplitude/phase band heatmaps and the top bands (cycles/pixel). "
    "--out writes a PNG figure; --json prints the numbers on stdout (schema: docs/explain-schema.md) and "
    "the terminal view goes to stderr. Large images are tiled: every tile's score is shown and the tile "
    "that pushed toward the verdict is explained. A plain-language reading says what the score means, how "
    "sure it is and what would change it.\n\n" + EXIT_CODES_HELP
)


def register(app: typer.Typer) -> None:
    app.command("explain", help=EXPLAIN_HELP)(explain_command)


def explain_command(
    image: Path = typer.Argument(..., help="The image file to explain.", show_default=False),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the figure to this .png file."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON on stdout."),
    weights: str | None = typer.Option(None, "--weights", "-w", help=common.WEIGHTS_HELP),
    device: str | None = typer.Option(None, "--device", help=common.DEVICE_HELP),
    force: bool = typer.Option(False, "--force", help="Allow --out to overwrite an existing file."),
    occlusion: bool = typer.Option(
        True, "--occlusion/--no-occlusion",
        help="Rerun the model once per band with that band removed, to check the weights against behaviour."),
) -> int:
    from apncli.data.images import decode_image

    check_figure_path(out, image, force=force)
    try:
        decoded = decode_image(image)
    except ImageError as exc:
        raise ImageError(f"{image}: {exc}") from exc
    # torch comes in only now: a bad path or flag is refused in a fraction of a second
    from apncli.engine import AI_GENERATED, Detector
    from apncli.explain import explain_image, render_figure, render_terminal

    detector = Detector.load(weights, device=common.parse_device(device))
    explanation = explain_image(detector, decoded.pixels, occlusion=occlusion, source=str(image))
    if out is not None:
        with outfile.output_errors(out):  # disk full, read-only: one line
            render_figure(explanation, out)
        explanation.figure = str(out)
    console = common.stderr_console if as_json else Console(soft_wrap=False)
    render_terminal(explanation, console)
    if out is not None:
        console.print(printable(f"figure written to {out}"), markup=False, highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(output.dumps(explanation.to_dict()) + "\n")  # one line: pipe to jq to read
        sys.stdout.flush()
    return ExitCode.FLAGGED if explanation.verdict == AI_GENERATED else ExitCode.OK


def check_figure_path(out: Path | None, image: Path, *, force: bool) -> None:
    """Refuse, before any work, to write somewhere that would destroy something: the input, or any file
    that exists unless ``force`` (and never a directory, or a name that promises another format)."""
    if out is None:
        return
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: the figure is a PNG; give a file name ending in .png")
    outfile.prepare_target(out, [image], force=force, option="--out")
