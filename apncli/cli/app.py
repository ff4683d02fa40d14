"""The ``apn`` command: one Typer app, one module per verb.

Each verb module exposes ``register(app)``; this file only assembles them and owns the outermost error
boundary, so that every run-level failure becomes one line on stderr and a documented exit code.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from apncli import __version__
from apncli.cli import common

app = typer.Typer(
    name="apn",
    help="Tell whether images were made by an AI generator (Artifact Purification Network).\n\n"
    + common.EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"apn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for unexpected errors."),
) -> None:
    """Global options shared by every command."""
    common.STATE.debug = debug
    # Pillow warns on stderr about odd files (corrupt EXIF, big images); apn reports them per record.
    warnings.filterwarnings("ignore", module=r"PIL\.")


def _register_commands() -> None:
    """Import verb modules lazily so a missing optional module never breaks the others."""
    from apncli.cli import models, report, scan

    for module in (scan, models, report):
        module.register(app)
    for optional in ("train", "evaluate", "explain"):
        try:
            module = __import__(f"apncli.cli.{optional}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"apncli.cli.{optional}":
                raise
            continue
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point: run the app inside the error boundary.

    A decode stuck past ``--decode-timeout`` lives on in a thread nobody can stop; once the outputs are
    closed the process ends at once instead of waiting for it at interpreter exit.
    """
    code = common.run_guarded(app)
    if "apncli.engine.pipeline" in sys.modules and sys.modules["apncli.engine.pipeline"].abandoned_decodes():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
