"""Aligned "reconstruction fakes": a real photo passed through a latent autoencoder (TAEF2).

Why: the reconstruction keeps the photo's content but re-synthesises every pixel with a
latent-diffusion-style decoder, so real vs. reconstruction differs only in decoder traces. The training
worker uses ``make_reconstruction_source("reconstruct:taef2")`` as an extra source of fakes.

Large images are processed in overlapping tiles blended with linear ramps, so memory stays bounded
(a 512-px tile needs a few hundred MB of activations in float32) whatever the photo's size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from apncli.errors import CheckpointError, DownloadError, ModelNotFoundError, UsageError
from apncli.model.taef2 import SCALE_FACTOR, TinyAutoencoder

ENV_DIR = "APN_TAEF2_DIR"
ENCODER_FILE = "taef2_encoder.pth"
DECODER_FILE = "taef2_decoder.pth"
# spec -> (encoder registry name, decoder registry name)
SPECS: dict[str, tuple[str, str]] = {"reconstruct:taef2": ("taef2_encoder", "taef2_decoder")}
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


class Reconstructor:
    """Callable RGB uint8 HxWx3 -> its reconstruction, same size and dtype.

    A class rather than a closure so it pickles into DataLoader worker processes.
    """

    def __init__(
        self,
        model: TinyAutoencoder,
        device: str | torch.device = "cpu",
        tile: int = DEFAULT_TILE,
        overlap: int = DEFAULT_OVERLAP,
    ) -> None:
        if tile % SCALE_FACTOR or overlap % SCALE_FACTOR or not 0 < overlap < tile:
            raise ValueError(
                f"tile and overlap must be multiples of {SCALE_FACTOR} with 0 < overlap < tile, "
                f"got tile={tile}, overlap={overlap}"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tile = tile
        self.overlap = overlap

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise ValueError(f"expected a non-empty HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        padded = np.pad(image, ((0, -h % SCALE_FACTOR), (0, -w % SCALE_FACTOR), (0, 0)), mode="reflect")
        x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))).to(self.device)
        out = self._reconstruct_tiled(x.float().div_(255))[:, :h, :w]
        return out.mul(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    @torch.inference_mode()
    def _reconstruct_tiled(self, x: torch.Tensor) -> torch.Tensor:
        """(3,H,W) float [0,1], sides multiples of 8 -> (3,H,W) float [0,1]."""
        _, h, w = x.shape
        th, tw = min(self.tile, h), min(self.tile, w)
        ramp_y, ramp_x = self._ramp(th, x.device), self._ramp(tw, x.device)
        weight = ramp_y[:, None] * ramp_x[None, :]
        acc = torch.zeros_like(x)
        norm = torch.zeros((h, w), device=x.device)
        for y0 in self._starts(h, th):
            for x0 in self._starts(w, tw):
                patch = x[None, :, y0 : y0 + th, x0 : x0 + tw]
                acc[:, y0 : y0 + th, x0 : x0 + tw] += self.model.reconstruct(patch)[0].float() * weight
                norm[y0 : y0 + th, x0 : x0 + tw] += weight
        return (acc / norm).clamp_(0, 1)

    def _starts(self, length: int, tile: int) -> list[int]:
        """Tile origins: steps of tile-overlap (a multiple of 8), the last one flush with the edge."""
        starts = list(range(0, length - tile, self.tile - self.overlap))
        return [*starts, length - tile]

    def _ramp(self, size: int, device: torch.device) -> torch.Tensor:
        """Blend weights rising linearly over ``overlap`` pixels at both ends; never zero."""
        i = torch.arange(size, device=device, dtype=torch.float32)
        return (torch.minimum(i + 1, size - i) / (self.overlap + 1)).clamp_(max=1.0)


class DiskMemo:
    """An image -> fake-image source whose outputs are kept on disk, keyed by the input's content hash.

    Why: reconstructing a 500-px photo through TAEF2 takes about 2 s on two CPU cores and training draws
    every real photo once per epoch; with the memo each photo is synthesised once per run (``--resume``
    included). Outputs are lossless PNG written atomically, so an interrupted write never leaves a torn
    entry, and an unreadable entry is simply computed again. ``tag`` names what the source does to the
    input (two sources sharing a folder need different tags).
    """

    def __init__(self, source: Callable[[np.ndarray], np.ndarray], cache_dir: str | Path, tag: str) -> None:
        self.source = source
        self.cache_dir = Path(cache_dir)
        self.tag = tag

    def path_for(self, rgb: np.ndarray) -> Path:
        digest = hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + repr(rgb.shape).encode()).hexdigest()
        return self.cache_dir / f"{digest}-{self.tag}.png"

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        path = self.path_for(rgb)
        cached = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if cached is not None:
            return cached[..., ::-1].copy()
        out = self.source(rgb)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(out[..., ::-1])):
            raise OSError(f"could not write {tmp}")
        tmp.replace(path)
        return out


def make_reconstruction_source(
    spec: str,
    *,
    encoder_path: str | Path | None = None,
    decoder_path: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Reconstructor:
    """Build the image -> reconstruction callable for a ``--fakes`` spec such as ``reconstruct:taef2``.

    Weights come from explicit paths, else from ``$APN_TAEF2_DIR``, else from the weights registry
    (local file, cache, or download). Compute is float32 even though the published weights are fp16.
    """
    if spec not in SPECS:
        raise UsageError(f"unknown reconstruction source {spec!r}; known: {', '.join(sorted(SPECS))}")
    enc, dec = _weight_paths(spec, encoder_path, decoder_path)
    return Reconstructor(_build(enc, dec), device=device)


def _build(encoder: Path, decoder: Path) -> TinyAutoencoder:
    from apncli.engine.checkpoint import load_torch_weights_only  # engine sits above data: import lazily

    encoder_state, decoder_state = load_torch_weights_only(encoder), load_torch_weights_only(decoder)
    try:
        return TinyAutoencoder.from_state_dicts(encoder_state, decoder_state)
    except RuntimeError as e:  # strict load: missing/unexpected keys or wrong shapes
        raise CheckpointError(f"{encoder} / {decoder} are not TAEF2 encoder/decoder weights: {e}") from e


def _weight_paths(
    spec: str, encoder_path: str | Path | None, decoder_path: str | Path | None
) -> tuple[Path, Path]:
    if (encoder_path is None) != (decoder_path is None):
        raise UsageError("give both an encoder and a decoder weights path, or neither")
    if encoder_path is not None and decoder_path is not None:
        return _existing(Path(encoder_path), Path(decoder_path), "given")
    folder = os.environ.get(ENV_DIR)
    if folder:
        return _existing(Path(folder) / ENCODER_FILE, Path(folder) / DECODER_FILE, f"${ENV_DIR}")
    from apncli.engine.cache import resolve_weights  # engine sits above data: import lazily

    try:
        encoder_name, decoder_name = SPECS[spec]
        return resolve_weights(encoder_name), resolve_weights(decoder_name)
    except (ModelNotFoundError, DownloadError) as e:
        raise type(e)(
            f"{e} (for {spec}: alternatively set ${ENV_DIR} to a folder holding {ENCODER_FILE} and "
            f"{DECODER_FILE})"
        ) from e


def _existing(encoder: Path, decoder: Path, origin: str) -> tuple[Path, Path]:
    missing = [str(p) for p in (encoder, decoder) if not p.is_file()]
    if missing:
        raise ModelNotFoundError(f"TAEF2 weights not found ({origin}): {', '.join(missing)}")
    return encoder, decoder
