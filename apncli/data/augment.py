"""Training augmentations and evaluation perturbations on RGB uint8 images.

Why these and not the usual flips/colour jitter: public AI-image datasets carry shortcuts that have
nothing to do with generation traces. GenImage's reals are ImageNet JPEGs while its fakes are PNGs; reals
come in many sizes while a generator emits one. A detector can score well by reading the container or the
resolution. The augmentations therefore touch *both classes with the same probabilities* so that neither
format nor size predicts the label:

- re-encoding (JPEG or WebP, random quality) with probability ``compress_prob``;
- a mild Gaussian blur with probability ``blur_prob``;
- down-scaling by a random factor before the crop with probability ``downscale_prob`` (off by default:
  resizing also weakens the very traces we want to learn, so enable it only when a dataset's classes differ
  in resolution, e.g. ``--downscale-prob 0.2``).

Cropping is done elsewhere at native resolution (wrap-padded when small), never by resizing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

__all__ = [
    "AugmentConfig",
    "Perturbation",
    "augment",
    "encode_jpeg",
    "encode_webp",
    "gaussian_blur",
    "parse_perturbations",
    "rescale",
]

_INTERPOLATIONS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def _encode(rgb: np.ndarray, ext: str, params: list[int]) -> np.ndarray:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {ext}")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def encode_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through JPEG at ``quality`` (1..100); deterministic for a given input."""
    return _encode(rgb, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)])


def encode_webp(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through lossy WebP at ``quality`` (1..100)."""
    return _encode(rgb, ".webp", [cv2.IMWRITE_WEBP_QUALITY, int(quality)])


def gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a kernel of about ±3σ (no-op for σ <= 0)."""
    if sigma <= 0:
        return rgb
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT_101)


def rescale(rgb: np.ndarray, scale: float, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize by ``scale`` (area interpolation by default, which anti-aliases down-scaling)."""
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=interpolation)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the class-agnostic training augmentations (see module docstring)."""

    compress_prob: float = 0.5
    quality: tuple[int, int] = (60, 100)
    webp_share: float = 0.25  # of the re-encoded images, this share uses WebP instead of JPEG
    blur_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 1.5)
    downscale_prob: float = 0.0
    downscale_range: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        for name in ("compress_prob", "webp_share", "blur_prob", "downscale_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        q0, q1 = self.quality
        if not 1 <= q0 <= q1 <= 100:
            raise ValueError(f"quality range must satisfy 1 <= lo <= hi <= 100, got {self.quality}")
        s0, s1 = self.blur_sigma
        if not 0 <= s0 <= s1:
            raise ValueError(f"blur sigma range must satisfy 0 <= lo <= hi, got {self.blur_sigma}")
        d0, d1 = self.downscale_range
        if not 0 < d0 <= d1 <= 1:
            raise ValueError(f"downscale range must satisfy 0 < lo <= hi <= 1, got {self.downscale_range}")

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (the paper's released configuration)."""
        return cls(compress_prob=0.0, blur_prob=0.0, downscale_prob=0.0)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def augment(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, min_side: int = 0) -> np.ndarray:
    """Apply down-scaling, blur and re-encoding in that order, each with its probability.

    The draws are made in a fixed order whatever fires, so one sample's randomness never depends on
    another's. Down-scaling never takes the short side below ``min_side`` (the crop size).
    """
    draws = rng.random(4)
    scale = rng.uniform(*cfg.downscale_range)
    interpolation = _INTERPOLATIONS[int(rng.integers(len(_INTERPOLATIONS)))]
    sigma = rng.uniform(*cfg.blur_sigma)
    quality = int(rng.integers(cfg.quality[0], cfg.quality[1] + 1))
    out = rgb
    if draws[0] < cfg.downscale_prob:
        scale = max(scale, min_side / max(1, min(rgb.shape[:2])))
        if scale < 1.0:
            out = rescale(out, scale, interpolation)
    if draws[1] < cfg.blur_prob:
        out = gaussian_blur(out, sigma)
    if draws[2] < cfg.compress_prob:
        out = encode_webp(out, quality) if draws[3] < cfg.webp_share else encode_jpeg(out, quality)
    return out


@dataclass(frozen=True)
class Perturbation:
    """One evaluation-time degradation, written ``kind:value`` (``none`` = unchanged)."""

    kind: str
    value: float = 0.0

    KINDS = ("none", "jpeg", "webp", "resize", "blur")

    @property
    def name(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.value:g}"

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.kind == "jpeg":
            return encode_jpeg(rgb, int(self.value))
        if self.kind == "webp":
            return encode_webp(rgb, int(self.value))
        if self.kind == "resize":
            return rescale(rgb, self.value, cv2.INTER_AREA if self.value < 1 else cv2.INTER_LINEAR)
        if self.kind == "blur":
            return gaussian_blur(rgb, self.value)
        return rgb

    @classmethod
    def parse(cls, text: str) -> Perturbation:
        """``jpeg:75`` / ``webp:80`` / ``resize:0.5`` / ``blur:1.0`` / ``none``; ValueError otherwise."""
        text = text.strip().lower()
        if text == "none":
            return cls("none")
        kind, sep, raw = text.partition(":")
        if kind not in cls.KINDS or not sep:
            raise ValueError(
                f"bad perturbation {text!r}; expected jpeg:Q, webp:Q, resize:S, blur:SIGMA or none"
            )
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"bad perturbation value in {text!r}") from None
        if kind in ("jpeg", "webp") and not (1 <= value <= 100 and value == int(value)):
            raise ValueError(f"{kind} quality must be an integer in [1, 100], got {raw}")
        if kind == "resize" and not 0.01 <= value <= 4:
            raise ValueError(f"resize scale must be in [0.01, 4], got {raw}")
        if kind == "blur" and not 0 <= value <= 50:
            raise ValueError(f"blur sigma must be in [0, 50], got {raw}")
        return cls(kind, value)


def parse_perturbations(spec: str | None) -> list[Perturbation]:
    """``"jpeg:75,resize:0.5"`` → [none, jpeg:75, resize:0.5]: 'none' always first, duplicates dropped."""
    out = [Perturbation("none")]
    for part in (spec or "").split(","):
        if part.strip():
            p = Perturbation.parse(part)
            if p not in out:
                out.append(p)
    return out
