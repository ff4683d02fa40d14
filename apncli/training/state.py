"""Resumable training state as ONE safetensors file: tensors in the body, everything else as JSON.

Why not ``torch.save``: loading a pickle runs code, and a training state is as shareable as a model. Here
any nested structure of dicts/lists/tuples/scalars/tensors (model and optimiser state dicts, scheduler
state, RNG states, progress counters) is flattened: each tensor is stored under a path-like key and
replaced by a reference in a JSON skeleton kept in the safetensors header. Writing is atomic (temporary
file, fsync, rename), so an interrupted save leaves the previous state intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from apncli.errors import CheckpointError, one_line
from apncli.files import give_default_mode

__all__ = ["load_state", "save_state"]

_KEY = "apn_train_state"
_TENSOR, _TUPLE, _DICT, _NDARRAY = "__tensor__", "__tuple__", "__dict__", "__ndarray__"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        key = prefix or "root"
        tensors[key] = torch.from_numpy(
            np.ascontiguousarray(obj).astype(np.int64 if obj.dtype.kind in "ui" else np.float64)
        )
        return {_NDARRAY: key, "dtype": obj.dtype.str}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _flatten(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {_DICT: [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a training state")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _NDARRAY in obj:
            return tensors[obj[_NDARRAY]].numpy().astype(np.dtype(obj["dtype"]))
        if _TUPLE in obj:
            return tuple(_unflatten(v, tensors) for v in obj[_TUPLE])
        if _DICT in obj:
            return {k: _unflatten(v, tensors) for k, v in obj[_DICT]}
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (nested containers of tensors and JSON scalars) to ``path``."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_KEY: json.dumps(skeleton)})
        give_default_mode(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (no pickle involved)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable training state ({one_line(exc)})"
        ) from None
    if _KEY not in meta:
        raise CheckpointError(f"{path}: a safetensors file, but not an apn training state")
    return _unflatten(json.loads(meta[_KEY]), tensors)
