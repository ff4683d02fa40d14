"""The engine: the one public API every command uses (load a detector, score images, scan paths).

Names are imported lazily so that light modules (device, cache, registry) load without pulling in torch
models, which keeps ``apn models`` and ``--help`` fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AI_GENERATED": "apncli.engine.verdicts",
    "INCONCLUSIVE": "apncli.engine.verdicts",
    "REAL": "apncli.engine.verdicts",
    "Analysis": "apncli.engine.detector",
    "Detector": "apncli.engine.detector",
    "ModelInfo": "apncli.engine.detector",
    "ScanOptions": "apncli.engine.pipeline",
    "ScanRecord": "apncli.engine.pipeline",
    "scan": "apncli.engine.pipeline",
    "score_candidates": "apncli.engine.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'apncli.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
