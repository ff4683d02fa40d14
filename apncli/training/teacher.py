"""Semantic-teacher features for the L_se2/L_se3 alignment terms (reference §4.1).

The paper aligns the artifact-irrelevant features with BLIP image features; the BLIP extractor is not part
of the released code, so the teacher is pluggable: any frozen model's embedding, precomputed once per
training image, stored as a safetensors file with

- tensor ``features``: (N, D) float, D = the model's ``feature_dim`` (256 for ``paper``: BLIP ITC fits),
- header metadata ``paths``: a JSON list of N image paths, absolute or relative to ``--data-root``.

Images without a row simply do not contribute to L_se2/L_se3.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from apncli.data.layouts import Sample
from apncli.errors import UsageError, one_line

__all__ = ["load_teacher"]


def load_teacher(
    path: Path, samples: Sequence[Sample], data_root: Path, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), row index per sample or -1) from a teacher file; UsageError if unusable."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            feats = f.get_tensor("features").float()
    except Exception as exc:
        raise UsageError(
            f"--teacher {path}: not a readable teacher file ({one_line(exc)})"
        ) from None
    try:
        paths = json.loads(meta["paths"])
    except (KeyError, ValueError):
        raise UsageError(f"--teacher {path}: header metadata 'paths' (a JSON list) is missing") from None
    if feats.ndim != 2 or feats.shape[0] != len(paths):
        raise UsageError(f"--teacher {path}: 'features' must be (N, D) with one row per path")
    if feats.shape[1] != dim:
        raise UsageError(
            f"--teacher {path}: features have {feats.shape[1]} dims, the model's feature_dim is {dim}"
        )
    index = {_key(Path(p), data_root): i for i, p in enumerate(paths)}
    rows = torch.tensor([index.get(_key(s.path, data_root), -1) for s in samples], dtype=torch.long)
    return feats, rows


def _key(path: Path, root: Path) -> str:
    """Paths compare as absolute, normalised strings (relative ones are taken relative to the data root)."""
    return os.path.normpath(str(path if path.is_absolute() else root / path))
