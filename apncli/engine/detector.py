"""The one object every command uses to run a checkpoint: ``Detector``.

It hides where weights come from (registry name, cache, path), how an image becomes crops (as the
checkpoint's preprocessing says), which device runs them, and how crop scores become an image score and a
verdict. Commands never touch the network directly; they go through this small API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from apncli.data import crops as crop_ops
from apncli.data.images import DecodedWindows, Windows
from apncli.data.signal import Signal, measure_signal
from apncli.engine import cache, checkpoint, registry
from apncli.engine.device import select_device
from apncli.engine.verdicts import AI_GENERATED, INCONCLUSIVE, REAL
from apncli.errors import CheckpointError, ModelNotFoundError
from apncli.model import APN, APNConfig, APNOutput, build_model
from apncli.model.backbones import ResNet
from apncli.model.efficientnet import EfficientNetLite

NO_DEFAULT_MODEL = (
    "no default detector is installed in this version of apn; pass --weights PATH "
    "(a .safetensors checkpoint written by `apn train`) or a registered name from `apn models list`"
)


@dataclass(frozen=True)
class ModelInfo:
    """What a user needs to cite a result: which model, which exact file, which decision rule."""

    name: str
    sha256: str | None
    path: Path | None
    config: APNConfig
    threshold: float
    inconclusive_band: tuple[float, float] | None
    preprocessing: dict[str, Any]
    metadata: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The ``model`` object of every scan record: enough to reproduce the score."""
        return {"name": self.name, "sha256": self.sha256}


@dataclass(frozen=True)
class CropPlan:
    """Where an image is analysed: top-left corners of ``size``-pixel crops on the (wrap-padded) canvas."""

    size: int
    positions: list[tuple[int, int]]


@dataclass
class Analysis:
    """Everything ``explain`` renders for one image, computed by one forward pass of the network."""

    p_ai: float
    tile_probabilities: list[float]
    crop_box: tuple[int, int, int, int]  # x, y, width, height on the padded canvas
    crop_rgb: np.ndarray
    input_tensor: torch.Tensor  # 1×3×S×S, BGR in [0,1], on the detector's device
    output: APNOutput
    signal: Signal
    plan: CropPlan  # where every scored tile lies; ``tile_probabilities`` follow its order
    tile_index: int  # the tile rerun for ``output``


class Detector:
    """A loaded checkpoint on a device, with the preprocessing and decision rule it was calibrated with."""

    def __init__(self, model: APN, info: ModelInfo, device: torch.device, tiles: int | None = None) -> None:
        self.model = model.eval().to(device)
        self.info = info
        self.device = device
        #: Crops per large image; None keeps the checkpoint's multi-crop setting.
        self.tiles = tiles

    # ----------------------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, name_or_path: str | Path | None = None, device: str | None = "auto",
             tiles: int | None = None) -> Detector:
        """Load a checkpoint by registered name or path; ``None`` means the registry's default detector.

        ``tiles`` overrides how many native-resolution crops of a large image are scored (the checkpoint's
        preprocessing says otherwise): more tiles look at more of a photo, at a proportional cost.
        """
        if name_or_path is None:
            name_or_path = registry.default_name()
            if name_or_path is None:
                raise ModelNotFoundError(NO_DEFAULT_MODEL)
        path = cache.resolve_weights(str(name_or_path))
        checkpoint.check_declared_network(path)
        state_dict, metadata = checkpoint.load_checkpoint(path)
        name = str(metadata.get("name") or Path(path).stem)
        sha256 = None
        if not Path(str(name_or_path)).exists():  # a registered name: resolving it checked the file's pin
            name = str(name_or_path)
            sha256 = registry.get_entry(name).sha256
        return cls._from_state(state_dict, metadata, name=name, path=Path(path),
                               sha256=sha256 or checkpoint.file_sha256(path), device=device, tiles=tiles)

    @classmethod
    def from_model(cls, model: APN, metadata: dict[str, Any], *, name: str = "in-memory",
                   device: str | None = "cpu") -> Detector:
        """Wrap a model already in memory (training, tests) with the same decision rule as a file."""
        info = _model_info(metadata, model.config, name=name, path=None, sha256=None)
        return cls(model, info, select_device(device))

    @classmethod
    def _from_state(cls, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any], *, name: str,
                    path: Path, sha256: str, device: str | None, tiles: int | None) -> Detector:
        try:
            config = APNConfig.from_dict(metadata["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path.name}: invalid model config in metadata: {exc}") from exc
        model = build_model(config)
        expected = {key: value.shape for key, value in model.state_dict().items()}
        checkpoint.check_state_dict(expected, state_dict)
        model.load_state_dict(state_dict, strict=True)
        info = _model_info(metadata, config, name=name, path=path, sha256=sha256)
        return cls(fold_batchnorm(model.eval()), info, select_device(device), tiles)

    # -------------------------------------------------------------------------------------- decisions
    def verdict(self, p_ai: float, threshold: float | None = None, signal: Signal | None = None) -> str:
        """Map a probability to a verdict; an explicit threshold disables the calibrated uncertainty band.

        An image whose ``signal`` is too poor for any verdict (``Signal.low_signal``) is inconclusive
        whatever its probability or the threshold.
        """
        if signal is not None and signal.low_signal is not None:
            return INCONCLUSIVE
        if threshold is None and self.info.inconclusive_band is not None:
            low, high = self.info.inconclusive_band
            if low <= p_ai <= high and low < high:
                return INCONCLUSIVE
        cut = self.info.threshold if threshold is None else threshold
        return AI_GENERATED if p_ai >= cut else REAL

    # ------------------------------------------------------------------------------------- preprocessing
    @property
    def crop_size(self) -> int:
        return int(self.info.preprocessing.get("crop", self.info.config.crop))

    @property
    def max_tiles(self) -> int:
        if self.tiles is not None:
            return max(1, self.tiles)
        multi = self.info.preprocessing.get("multi_crop") or {}
        return int(multi.get("max_tiles", 1)) if multi.get("enabled", False) else 1

    def crops_of(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The RGB crops of one image, placed as ``prepare`` places them."""
        return self.prepare(rgb)[0]

    def prepare(self, rgb: np.ndarray) -> tuple[list[np.ndarray], Signal]:
        """The RGB crops of one image (views) and how much signal they hold (used by decode workers; the
        signal decides low-signal ``inconclusive`` verdicts)."""
        _, crops, signal = self._prepared(rgb)
        return crops, signal

    def windows(self) -> Windows:
        """The crops ``prepare`` places, as a request a decoder serves without converting the whole image
        (``data.images.decode_windows``: same positions, same pixels)."""
        size, tiles = self.crop_size, self.max_tiles
        return Windows(size=size, step=crop_ops.DETAIL_SUBSAMPLE,
                       place=lambda height, width, sample: crop_ops.place_textured_tiles(
                           height, width, size, tiles, sample))

    def windows_signal(self, decoded: DecodedWindows) -> Signal:
        """How much signal the windows a decoder cut for ``windows()`` hold (as ``prepare`` measures it)."""
        size, positions = self.crop_size, decoded.positions
        return measure_signal(decoded.height, decoded.width, size, positions, decoded.windows)

    def _prepared(self, rgb: np.ndarray) -> tuple[CropPlan, list[np.ndarray], Signal]:
        """Native-resolution crops of an H×W×3 image: never resized (it destroys the artifacts); the image
        is wrap-padded to the crop size, and a large one tiled, its most detailed positions first
        (``crop_ops.textured_tile_positions``)."""
        size = self.crop_size
        canvas = crop_ops.pad_to(rgb, size)
        plan = CropPlan(size=size, positions=crop_ops.textured_tile_positions(canvas, size, self.max_tiles))
        crops = [crop_ops.extract(canvas, y, x, size) for y, x in plan.positions]
        return plan, crops, measure_signal(rgb.shape[0], rgb.shape[1], size, plan.positions, crops)

    # -------------------------------------------------------------------------------------- inference
    def predict_crops(self, crops: Sequence[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """Probability of being AI-generated for each RGB crop, ``batch_size`` crops per forward pass
        (``None``: all in one)."""
        if not crops:
            return np.zeros(0, dtype=np.float64)
        if batch_size is not None and len(crops) > batch_size:
            return np.concatenate([self.predict_crops(crops[i:i + batch_size])
                                   for i in range(0, len(crops), batch_size)])
        batch = self._to_input(crops)
        with torch.inference_mode():  # float32 on every device: see device.autocast_dtype
            # Scoring needs only the artifact path: skip the semantic head (same logits, ~1.5x faster).
            logits = self.model(batch, irrelevant=False).logits
        return torch.softmax(logits.float(), dim=1)[:, 1].double().cpu().numpy()

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Per-image probability (mean over the image's crops) for RGB uint8 arrays."""
        return self._scored(images, batch_size)[0]

    def judge(self, images: Sequence[np.ndarray], threshold: float | None = None,
              batch_size: int = 16) -> tuple[np.ndarray, list[str]]:
        """Per image, its probability (as ``predict``) and the verdict ``apn scan`` gives it: ``verdict``
        with the image's own signal, so the low-signal rule applies. The crops are placed once for both."""
        scores, signals = self._scored(images, batch_size)
        return scores, [self.verdict(float(p), threshold, signal=signal)
                        for p, signal in zip(scores, signals, strict=True)]

    def _scored(self, images: Sequence[np.ndarray], batch_size: int) -> tuple[np.ndarray, list[Signal]]:
        prepared = [self.prepare(image) for image in images]
        flat = [crop for crops, _ in prepared for crop in crops]
        scores = aggregate(self.predict_crops(flat, batch_size), [len(crops) for crops, _ in prepared])
        return scores, [signal for _, signal in prepared]

    def analyse(self, rgb: np.ndarray) -> Analysis:
        """Score all crops, then rerun the one that pushed toward the verdict with everything ``explain``
        needs: the most AI-like tile of an ``ai-generated`` image, the most real-looking of a ``real`` one,
        and for ``inconclusive`` the tile whose score is closest to the image's."""
        plan, crops, signal = self._prepared(rgb)
        tile_scores = self.predict_crops(crops)
        p_ai = float(tile_scores.mean())
        chosen = _tile_toward(self.verdict(p_ai, signal=signal), tile_scores, p_ai)
        y, x = plan.positions[chosen]
        tensor = self._to_input([crops[chosen]])
        with torch.inference_mode():
            output = self.model(tensor, return_images=True)
        return Analysis(p_ai=p_ai, tile_probabilities=[float(s) for s in tile_scores],
                        crop_box=(x, y, self.crop_size, self.crop_size), crop_rgb=crops[chosen],
                        input_tensor=tensor, output=output, signal=signal, plan=plan, tile_index=chosen)

    def _to_input(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        return crop_ops.to_tensor_bgr(list(crops)).to(self.device, non_blocking=True)

    def describe(self) -> dict[str, Any]:
        """The run manifest's model part: what a report must cite to be reproducible."""
        return {
            "name": self.info.name,
            "sha256": self.info.sha256,
            "config": self.info.config.name,
            "threshold": self.info.threshold,
            "inconclusive_band": list(self.info.inconclusive_band) if self.info.inconclusive_band else None,
            "preprocessing": self.info.preprocessing,
            "max_tiles": self.max_tiles,
            "device": str(self.device),
        }


def _tile_toward(verdict: str, tile_scores: np.ndarray, p_ai: float) -> int:
    if verdict == AI_GENERATED:
        return int(np.argmax(tile_scores))
    if verdict == INCONCLUSIVE:
        return int(np.argmin(np.abs(tile_scores - p_ai)))
    return int(np.argmin(tile_scores))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold the BatchNorm layers of every ResNet trunk (the band heads) and EfficientNet-Lite trunk (the
    pretrained configs' spatial branch and semantic head) into the preceding convolutions.

    A detector never trains, so each Conv→BN pair is one affine map; folding it removes a pass over the
    activations: ``lite`` 12–15 % less CPU per crop (4-crop batches), the EfficientNet-Lite0 trunk ~5 %;
    logits equal up to float rounding (~1e-7). Not the proposers' 3-channel bottlenecks, which run as
    tensor ops on the convolutions' weights (``model/proposal.py``). The ResNets use
    torchvision's layout (``convN`` feeds ``bnN``; ``downsample`` is conv, BN), which the model keeps for
    weight loading; EfficientNet-Lite lists its pairs (``conv_bn_pairs``). Only call this on a model the
    detector owns: its BatchNorm layers are gone afterwards.
    """
    for module in model.modules():
        if isinstance(module, EfficientNetLite):
            for owner, conv, bn in module.conv_bn_pairs():
                _fold_pair(owner, conv, bn)
    for trunk in [m for m in model.modules() if isinstance(m, ResNet)]:
        for module in list(trunk.modules()):
            for name, bn in list(module.named_children()):
                conv = getattr(module, name.replace("bn", "conv"), None)
                if name.startswith("bn") and isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d):
                    _fold_pair(module, name.replace("bn", "conv"), name)
            if (isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[0], nn.Conv2d)
                    and isinstance(module[1], nn.BatchNorm2d)):
                _fold_pair(module, "0", "1")
    return model


def _fold_pair(owner: nn.Module, conv: str, bn: str) -> None:
    """Replace ``owner.<conv>`` by the convolution with ``owner.<bn>`` folded in, and the BN by Identity."""
    layer, norm = getattr(owner, conv), getattr(owner, bn)
    if isinstance(norm, nn.BatchNorm2d):
        setattr(owner, conv, fuse_conv_bn_eval(layer, norm))
        setattr(owner, bn, nn.Identity())


def aggregate(crop_scores: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Mean crop probability per image: every crop of a generated image carries the trace."""
    out = np.empty(len(counts), dtype=np.float64)
    start = 0
    for index, count in enumerate(counts):
        out[index] = float(crop_scores[start:start + count].mean()) if count else float("nan")
        start += count
    return out


def _model_info(metadata: dict[str, Any], config: APNConfig, *, name: str, path: Path | None,
                sha256: str | None) -> ModelInfo:
    band = metadata.get("inconclusive_band")
    preprocessing = dict(metadata.get("preprocessing") or checkpoint.default_preprocessing(config))
    return ModelInfo(
        name=name,
        sha256=sha256,
        path=path,
        config=config,
        threshold=float(metadata.get("threshold", 0.5)),
        inconclusive_band=(float(band[0]), float(band[1])) if band else None,
        preprocessing=preprocessing,
        metadata=metadata,
    )
