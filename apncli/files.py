"""File permissions for what apn writes through a temporary file (atomic writes).

``tempfile.mkstemp`` creates files readable by their owner only (0600), which a rename then carries to
the final name: a checkpoint or figure others on the machine should read would come out private. Files
apn writes get what a plain ``open(path, "w")`` gives: 0666 minus the process umask.
"""

from __future__ import annotations

import os


def _read_umask() -> int:
    """The process umask, read once at import (setting it back and forth later would race threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def give_default_mode(path: str | os.PathLike[str]) -> None:
    """Set ``path`` to the mode a newly created file gets (0666 & ~umask, e.g. 0644)."""
    os.chmod(path, 0o666 & ~UMASK)
