"""Pieces every verb shares: exit codes, the stderr console, the error boundary and common options."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import typer
import typer.main
from rich.console import Console
from rich.text import Text

from apncli.errors import APNError, UsageError, one_line, printable


class ExitCode(IntEnum):
    """Exit codes a shell script can branch on (documented in ``--help`` and README)."""

    OK = 0  # ran; nothing flagged as AI-generated
    FLAGGED = 1  # ran; at least one image was flagged as AI-generated
    ERROR = 2  # usage error, run-level failure, or no input could be read at all
    PARTIAL = 3  # ran; nothing flagged, but some inputs could not be read
    DECLARED_AI = 4  # ran; nothing flagged by the pixels, but a file's metadata declares AI generation
    INTERRUPTED = 130  # Ctrl-C; everything already written stays valid
    TERMINATED = 143  # SIGTERM (timeout, systemd, docker, CI): handled like Ctrl-C, 128 + 15 as shells say


EXIT_CODES_HELP = (
    "Exit codes: 0 nothing flagged; 1 at least one image flagged as AI-generated; "
    "2 usage error, run-level error or nothing readable; 3 nothing flagged but some files unreadable; "
    "4 nothing flagged, but a file's metadata declares AI generation; 130 interrupted (Ctrl-C); "
    "143 terminated (SIGTERM)."
)


@dataclass
class _State:
    debug: bool = False


STATE = _State()

#: Logs, progress and errors go to stderr so stdout stays machine-readable.
stderr_console = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: object) -> None:
    """Print a one-line error to stderr; the message is shown as plain text, never parsed as markup."""
    stderr_console.print(Text.assemble(("error:", "bold red"), " ", printable(one_line(message))),
                         highlight=False)


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is: it unwinds like Ctrl-C (every ``finally`` closes its output)
    but, unlike ``KeyboardInterrupt``, no library on the way turns it into another exit code."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def run_guarded(app: typer.Typer) -> int:
    """Run the Typer app so that no traceback reaches the user unless ``--debug`` asked for one.

    SIGTERM is handled like Ctrl-C for the duration of the run: outputs are closed valid and resumable.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return _run_app(app)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run_app(app)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_app(app: typer.Typer) -> int:
    try:
        command = typer.main.get_command(app)
        plain_metavars(command)
        result = command.main(prog_name="apn", standalone_mode=False)
    except Terminated:
        error("terminated")
        return ExitCode.TERMINATED
    except KeyboardInterrupt:
        error("interrupted")
        return ExitCode.INTERRUPTED
    except APNError as exc:
        if STATE.debug:
            traceback.print_exc()
        error(exc)
        return ExitCode.ERROR
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if STATE.debug or os.environ.get("APN_DEBUG"):
            traceback.print_exc()
        # Typer's click exceptions (vendored in new Typer, plain click in old): duck-typed on purpose.
        if type(exc).__name__ == "Abort":
            error("interrupted")
            return ExitCode.INTERRUPTED
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show(file=sys.stderr)
            return ExitCode.ERROR
        error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)")
        return ExitCode.ERROR
    return int(result or 0)


#: What the help shows after an option that takes a value, by the value's Python type.
METAVARS = {bool: "", int: "N", float: "X", Path: "PATH", str: "TEXT"}


def plain_metavars(command: Any) -> None:
    """Help without type tags: ``--batch-size N``, ``--json``, ``PATHS...`` instead of ``<int range>``,
    ``<bool>``, ``<list[str]>`` (Typer >= 0.20 prints ``<type>`` for every parameter; older Typer does
    not, and only the ``metavar`` matters there). Applied to every sub-command, in place."""
    for sub in (getattr(command, "commands", None) or {}).values():
        plain_metavars(sub)
    for param in getattr(command, "params", []):
        _plain(param)
    built_in = getattr(command, "get_help_option", None)  # --help is made per context, not a param
    if built_in is not None:
        command.get_help_option = lambda ctx: _plain(built_in(ctx))


def _plain(param: Any) -> Any:
    if param is None:
        return None
    label = getattr(param, "metavar", None) or _metavar(param)  # an explicit metavar (K/N) wins
    param.metavar = label
    if hasattr(param, "display_type_rich"):  # instance attribute shadows Typer's "<type>" label
        shown = None if label.endswith("...") or not label else label  # an argument shows its name
        param.display_type_rich = lambda ctx: shown
    return param


def _metavar(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return ""
    if getattr(param, "param_type_name", "") == "argument":
        return str(param.name).upper() + ("..." if param.nargs != 1 else "")
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    element = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
    return METAVARS.get(element, str(param.name).upper())


def refuse_to_clobber(target: Path, inputs: Sequence[Path], *, force: bool,
                      hint: str = "pass --force to overwrite it") -> None:
    """Before any work: never write over an input, nor over an existing file without ``--force``."""
    refuse_input_overwrite(target, inputs)
    if target.exists() and not force:
        raise UsageError(f"{target} exists; {hint}")


def refuse_input_overwrite(target: Path, inputs: Sequence[Path]) -> None:
    """An input is an input however it is reached: symlink, hard link, or an image in a scanned folder."""
    for item in inputs:
        if same_file(target, item) or _image_inside(target, item):
            raise UsageError(f"refusing to overwrite the input {item if item.is_file() else target}")


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file; a path that cannot be reached (loop, too long) is no file."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _image_inside(target: Path, folder: Path) -> bool:
    from apncli.data.images import IMAGE_EXTENSIONS

    try:
        if not (folder.is_dir() and target.is_file()):
            return False
    except OSError:  # e.g. an input path that is too long or unsearchable: the scan reports it as a record
        return False
    return (target.suffix.lower() in IMAGE_EXTENSIONS
            and Path(os.path.realpath(target)).is_relative_to(os.path.realpath(folder)))


def parse_device(value: str | None) -> str:
    """Normalise the ``--device`` flag; ``APN_DEVICE`` applies when the flag is absent."""
    chosen = value or os.environ.get("APN_DEVICE") or "auto"
    if not chosen.strip():
        raise UsageError("--device must not be empty")
    return chosen.strip()


WEIGHTS_HELP = ("Detector to use: a registered name (see `apn models list`), a path to a .safetensors file, "
                "or an `apn train` run folder (its model.safetensors).")
DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (CUDA, then MPS, then CPU). Env: APN_DEVICE."
