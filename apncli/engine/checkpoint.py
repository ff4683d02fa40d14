"""The one detector checkpoint format: safetensors weights + JSON metadata in the safetensors header.

Why safetensors and not ``torch.save``: a pickle checkpoint runs arbitrary code when loaded, and people
download detectors from strangers. A safetensors file is a length-prefixed JSON header followed by raw
tensor bytes, so loading one never executes anything. The metadata (config, threshold, preprocessing…)
lives in the header's ``__metadata__["apn"]`` as a JSON document, so weights and the facts needed to use
them can never be separated.

Every check here exists because a checkpoint can lie: a header that claims more bytes than the file has,
a threshold of 7, a config that would build a 40 GB network, tensors whose shapes don't match the config.
Each becomes a one-line CheckpointError instead of a crash deep inside torch.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from apncli.engine.download import file_digest
from apncli.errors import CheckpointError, one_line
from apncli.files import give_default_mode

FORMAT_VERSION = 1
METADATA_KEY = "apn"
# A real header is a few KiB per hundred tensors; 16 MiB is generous and stops a hostile length field
# from making us allocate gigabytes before we have looked at a single byte of it.
MAX_HEADER_BYTES = 16 * 1024 * 1024
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle"})
REQUIRED_KEYS = ("format_version", "name", "config", "threshold", "inconclusive_band")
OPTIONAL_DICT_KEYS = ("preprocessing", "training", "metrics", "provenance")
MAX_NAME_CHARS = 200
#: The paper configuration has ~100 M parameters; 1 G (4 GB of float32) is a generous ceiling.
MAX_PARAMETERS = 1_000_000_000
MAX_METADATA_DEPTH = 32


def default_preprocessing(config: Any) -> dict[str, Any]:
    """The preprocessing the paper model was trained with; ``config`` is an APNConfig or its dict."""
    crop = config["crop"] if isinstance(config, Mapping) else config.crop
    return {
        "color_order": "BGR",
        "scale": [0, 1],
        "crop": crop,
        "eval_crop": "center",
        "pad_mode": "wrap",
        "resize": None,
        "multi_crop": {"enabled": True, "max_tiles": 4},
    }


def save_checkpoint(path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor],
                    metadata: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically (tmp file + fsync + rename) so a crash never leaves half a file.

    The metadata is validated first: writing a checkpoint we would refuse to load only moves the error
    to a worse moment.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"detector checkpoints must be saved as .safetensors, not {path.name!r}")
    meta = dict(metadata)
    meta.setdefault("format_version", FORMAT_VERSION)
    validate_metadata(meta)
    header = {METADATA_KEY: json.dumps(meta, allow_nan=False, sort_keys=True)}
    tensors = _plain_tensors(state_dict)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp_name, metadata=header)
        give_default_mode(tmp_name)
        _fsync_file(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def read_metadata(path: str | os.PathLike[str], validate: bool = True) -> dict[str, Any]:
    """Return the ``apn`` metadata document from the header alone, without reading any tensor."""
    header = _read_header(Path(path))
    raw = header.get("__metadata__")
    if not isinstance(raw, dict) or not isinstance(raw.get(METADATA_KEY), str):
        raise CheckpointError(f"{Path(path).name}: a safetensors file, but not an apn checkpoint "
                              f"(no '{METADATA_KEY}' metadata in its header)")
    meta = _parse_json(raw[METADATA_KEY], f"{Path(path).name}: '{METADATA_KEY}' metadata")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{Path(path).name}: '{METADATA_KEY}' metadata must be a JSON object")
    if validate:
        try:
            validate_metadata(meta)
        except CheckpointError as exc:
            raise CheckpointError(f"{Path(path).name}: {exc}") from None
    return meta


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load tensors (on the CPU) and validated metadata; never unpickles anything."""
    path = Path(path)
    metadata = read_metadata(path)
    try:
        state_dict = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name}: unreadable tensor data ({_one_line(exc)})") from None
    return state_dict, metadata


def validate_metadata(meta: Mapping[str, Any]) -> None:
    """Raise CheckpointError naming the first field that is missing, malformed or out of range."""
    if not isinstance(meta, Mapping):
        raise CheckpointError("checkpoint metadata must be a JSON object")
    _check_format_version(meta.get("format_version"))
    _check_depth(meta)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint metadata is missing {', '.join(missing)}")
    name = meta["name"]
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise CheckpointError(f"checkpoint 'name' must be a non-empty string of at most {MAX_NAME_CHARS} "
                              "characters")
    crop = _check_config(meta["config"])
    threshold = _probability(meta["threshold"], "threshold")
    _check_band(meta["inconclusive_band"], threshold)
    for key in OPTIONAL_DICT_KEYS:
        if key in meta and not isinstance(meta[key], dict):
            raise CheckpointError(f"checkpoint '{key}' must be a JSON object, got {type(meta[key]).__name__}")
    if "preprocessing" in meta:
        _check_preprocessing(meta["preprocessing"], crop)


def check_state_dict(expected: Mapping[str, torch.Size | tuple[int, ...]],
                     got: Mapping[str, torch.Tensor | torch.Size | tuple[int, ...]]) -> None:
    """Compare parameter names/shapes and raise one line naming the first problem and how many there are.

    ``load_state_dict`` reports every mismatch in a wall of text; a user holding a checkpoint whose
    metadata lies about its config needs one sentence.
    """
    problems: list[str] = []
    for key, shape in expected.items():
        if key not in got:
            problems.append(f"{key!r} is missing")
        elif _shape(got[key]) != tuple(shape):
            problems.append(f"{key!r} has shape {_shape(got[key])}, the config expects {tuple(shape)}")
    problems += [f"{key!r} is not a parameter of this config" for key in got if key not in expected]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"checkpoint tensors do not match its config: {len(problems)} mismatch(es); "
                              f"first: {problems[0]}{more}")


def check_declared_network(path: str | os.PathLike[str]) -> None:
    """Before a byte of tensor data is read or a parameter allocated: the tensor shapes the header declares
    must be those of the network the config describes (built on the ``meta`` device, which allocates
    nothing), and that network must fit :data:`MAX_PARAMETERS`, so a small file cannot make apn build a
    huge model. Raises ``CheckpointError`` in one line.
    """
    path = Path(path)
    metadata = read_metadata(path)
    try:
        check_state_dict(expected_shapes(metadata["config"]), _declared_shapes(_read_header(path)))
    except CheckpointError as exc:
        raise CheckpointError(f"{path.name}: {exc}") from None


def expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the network ``config`` describes, without allocating it.

    Raises ``CheckpointError`` if it would hold more than :data:`MAX_PARAMETERS` parameters.
    """
    from apncli.model import APNConfig, build_model  # lazy: the engine must import without building models

    with torch.device("meta"):
        model = build_model(APNConfig.from_dict(dict(config)))
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    count = sum(math.prod(shape) for shape in shapes.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"its config describes a network of {count / 1e9:.3g} G parameters, over the "
                              f"{MAX_PARAMETERS / 1e9:g} G limit; refusing to build it")
    return shapes


def _declared_shapes(header: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes as the safetensors header declares them (validated as lists of sizes)."""
    shapes = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                  for n in shape):
            raise CheckpointError(f"malformed shape for tensor {key!r}")
        shapes[key] = tuple(shape)
    return shapes


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (streamed), the identity a checkpoint is reported and pinned by."""
    return file_digest(Path(path))


def load_torch_weights_only(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a third-party ``.pth`` state_dict (torchvision ImageNet weights) with the restricted unpickler.

    ``weights_only=True`` only rebuilds tensors and plain containers; any other global in the pickle is
    refused before it can run. This is the one place the project touches pickle at all.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"{Path(path).name}: refused: not a plain tensor state_dict (a pickle that would need unsafe "
            f"loading, or a corrupt file): {_unpickler_reason(exc)}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{Path(path).name}: expected a dict of tensors (a state_dict)")
    return state


# --- header parsing ----------------------------------------------------------------------------------


def _read_header(path: Path) -> dict[str, Any]:
    """Parse and sanity-check the safetensors header without trusting its length field."""
    _refuse_pickle(path)
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            prefix = f.read(9)
            if len(prefix) < 9:
                raise CheckpointError(f"{path.name}: not a safetensors checkpoint ({file_size} bytes)")
            (n,) = struct.unpack("<Q", prefix[:8])
            looks_json = prefix[8:9] == b"{"
            if not looks_json:
                raise CheckpointError(f"{path.name}: not a safetensors checkpoint (no JSON header)")
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path.name}: header claims {n} bytes, over the "
                                      f"{MAX_HEADER_BYTES // (1024 * 1024)} MiB limit; refusing to read it")
            if 8 + n > file_size:
                raise CheckpointError(f"{path.name}: truncated: header claims {n} bytes but the file has "
                                      f"{file_size}")
            f.seek(8)
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path.name}: cannot read checkpoint: {exc.strerror or exc}") from None
    header = _parse_json(raw, f"{path.name}: safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name}: safetensors header must be a JSON object")
    _check_data_extent(path, header, file_size - 8 - n)
    return header


def _check_data_extent(path: Path, header: Mapping[str, Any], data_bytes: int) -> None:
    """Catch a truncated file (or a lying header) before safetensors maps it."""
    needed = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                or offsets[0] > offsets[1]):
            raise CheckpointError(f"{path.name}: malformed header entry for tensor {key!r}")
        needed = max(needed, offsets[1])
    if needed > data_bytes:
        raise CheckpointError(f"{path.name}: truncated: tensors need {needed} bytes of data, the file has "
                              f"{data_bytes}")
    if needed < data_bytes:  # e.g. a sparse multi-GB file: refused before hashing it
        raise CheckpointError(f"{path.name}: {data_bytes - needed} bytes after the last tensor; not a "
                              "safetensors checkpoint as written")


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path.name}: refusing a pickle checkpoint ({path.suffix}): loading one can run arbitrary code. "
            "apn detectors are .safetensors files; convert trusted weights with save_checkpoint()"
        )


def _parse_json(raw: str | bytes, what: str) -> Any:
    """json.loads that refuses NaN/Infinity and turns every failure (incl. absurd nesting) into one line."""
    def no_constants(token: str) -> Any:
        raise ValueError(f"non-finite number {token}")
    try:
        return json.loads(raw, parse_constant=no_constants)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} is not valid JSON ({_one_line(exc)})") from None


# --- metadata fields ---------------------------------------------------------------------------------


def _check_depth(meta: Mapping[str, Any]) -> None:
    """Metadata nested deeper than :data:`MAX_METADATA_DEPTH` would break JSON writers (recursion)."""
    stack: list[tuple[Any, int]] = [(meta, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            raise CheckpointError(f"checkpoint metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        children = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)


def _check_format_version(version: Any) -> None:
    if version is None:
        raise CheckpointError("checkpoint metadata has no format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"unknown checkpoint format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format_version {version} is newer than this apn understands "
                              f"(up to {FORMAT_VERSION}); upgrade apn")


def _check_config(config: Any) -> int:
    """Validate the network config through the model's own parser; return its crop size."""
    from apncli.model.config import APNConfig  # lazy: the engine must import without building models

    try:
        return APNConfig.from_dict(config).crop
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint config is invalid: {_one_line(exc)}") from None


def _probability(value: Any, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise CheckpointError(f"checkpoint {what} must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise CheckpointError(f"checkpoint {what} {value!r} is outside [0, 1]")
    return float(value)


def _check_band(band: Any, threshold: float) -> None:
    if not isinstance(band, list) or len(band) != 2:
        raise CheckpointError(f"checkpoint inconclusive_band must be [lo, hi], got {band!r}")
    lo = _probability(band[0], "inconclusive_band[0]")
    hi = _probability(band[1], "inconclusive_band[1]")
    if not lo <= threshold <= hi:
        raise CheckpointError(f"checkpoint inconclusive_band {band!r} does not contain the threshold "
                              f"{threshold}")


def _check_preprocessing(pre: Mapping[str, Any], crop: int) -> None:
    """Only the fields that change what the network sees; a lie here silently ruins every prediction."""
    if "color_order" in pre and pre["color_order"] not in ("BGR", "RGB"):
        raise CheckpointError(f"preprocessing color_order must be 'BGR' or 'RGB', got {pre['color_order']!r}")
    if "crop" in pre and pre["crop"] != crop:
        raise CheckpointError(f"preprocessing crop {pre['crop']!r} disagrees with the config crop {crop}")
    multi = pre.get("multi_crop")
    if multi is not None:
        tiles = multi.get("max_tiles") if isinstance(multi, dict) else None
        if not isinstance(tiles, int) or isinstance(tiles, bool) or not 1 <= tiles <= 64:
            raise CheckpointError(f"preprocessing multi_crop.max_tiles must be an integer in [1, 64], "
                                  f"got {tiles!r}")


# --- small helpers -----------------------------------------------------------------------------------


def _plain_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors; shared storage is cloned because safetensors refuses aliasing."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
        tensor = value.detach().to("cpu").contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if ident in seen:
            tensor = tensor.clone()
        seen.add(ident)
        out[key] = tensor
    return out


def _shape(value: torch.Tensor | torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)


def _unpickler_reason(exc: BaseException) -> str:
    """The one useful clause of torch's multi-paragraph error, without its advice to load unsafely."""
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed|\n\n|$)", str(exc), re.S)
    return one_line(match.group(1)) if match else _one_line(exc)


def _one_line(exc: BaseException) -> str:
    return one_line(exc)[:300] or type(exc).__name__


def _fsync_file(name: str) -> None:
    with open(name, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not every platform lets us open a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
