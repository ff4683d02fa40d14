"""Frequency geometry for explanations: band maps, centred full-plane views and cycles/pixel ranges.

The network works on the *unshifted* rfft2 half-plane (rows u = 0..H-1 in FFT order, columns
v = 0..W/2). People read spectra centred, on the full plane, in cycles/pixel. Everything here converts the
first into the second without changing what the network computed: the full plane is the half-plane
mirrored by conjugate symmetry, then fftshift-ed, so a bin's value is exactly the network's value.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from apncli.model.spectrum import spectrum

Interval = tuple[float, float]


def weighted_band_map(masks: Tensor, weights: Tensor) -> Tensor:
    """Σ_k w_k·M_k / Σ_k w_k per colour channel: (3, K, H, W') masks and (K,) weights → (3, H, W').

    Each bin gets the weight share of the proposals that cover it, so 1 means "every proposal, by weight,
    looks here" and 0 "no proposal does". A zero weight sum (all proposals switched off) gives zeros.
    """
    weights = weights.to(masks.dtype)
    total = weights.sum()
    if float(total) <= 0.0:
        return torch.zeros_like(masks[:, 0])
    return torch.einsum("ckhw,k->chw", masks, weights) / total


def log_amplitude(x: Tensor) -> np.ndarray:
    """log(1 + |rfft2(x)|) of a (3, H, W) crop, averaged over colour channels: (H, W') half-plane.

    Uses the network's own :func:`spectrum`, so the background is the amplitude the proposers saw.
    """
    amp, _ = spectrum(x.float())
    return torch.log1p(amp).mean(0).cpu().numpy()


def centred_full_plane(half: np.ndarray, width: int) -> np.ndarray:
    """(..., H, W/2+1) unshifted half-plane → (..., H, W) full plane, zero frequency at (H//2, W//2).

    Real images have X(-u, -v) = conj X(u, v), so amplitudes and masks satisfy F(u, v) = F(-u mod H, W-v)
    for the columns rfft2 drops. Then ``fftshift`` on both axes centres the zero frequency.
    """
    height = half.shape[-2]
    kept = half.shape[-1]
    if kept != width // 2 + 1:
        raise ValueError(f"half-plane has {kept} columns, expected {width // 2 + 1} for width {width}")
    rows = (-np.arange(height)) % height
    mirror_cols = width - np.arange(kept, width)  # v > W/2 ← column W-v of row -u
    mirrored = half[..., rows, :][..., mirror_cols]
    full = np.concatenate([half, mirrored], axis=-1)
    return np.fft.fftshift(full, axes=(-2, -1))


def row_frequency(u: int, height: int) -> float:
    """f_y of unshifted row u: u/H for u < H/2, else (u - H)/H."""
    return u / height if 2 * u < height else (u - height) / height


def row_intervals(first: int, last: int, height: int) -> list[Interval]:
    """Signed f_y intervals covered by unshifted rows first..last (one or two: the row order wraps at H/2)."""
    last_positive = (height - 1) // 2
    if first <= last_positive < last:
        return [
            (row_frequency(first, height), row_frequency(last_positive, height)),
            (row_frequency(last_positive + 1, height), row_frequency(last, height)),
        ]
    return [(row_frequency(first, height), row_frequency(last, height))]


def column_interval(first: int, last: int, width: int) -> Interval:
    """f_x interval of rfft2 columns first..last: f_x = v/W, always in [0, 0.5]."""
    return (first / width, last / width)


def hard_bins(starts: Tensor, ends: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """The bin indices a = clamp(floor(s·L)), b = clamp(floor(e·L)) exactly as the model's masks use them."""
    a = (starts.detach() * length).floor().clamp(0, length - 1)
    b = (ends.detach() * length).floor().clamp(0, length - 1)
    return a.long(), b.long()


def cells(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average a 2-D map down (or nearest-neighbour up) to size×size cells for compact displays."""
    interpolation = cv2.INTER_AREA if min(image.shape) >= size else cv2.INTER_NEAREST
    return cv2.resize(image.astype(np.float32), (size, size), interpolation=interpolation)


__all__ = [
    "Interval",
    "cells",
    "centred_full_plane",
    "column_interval",
    "hard_bins",
    "log_amplitude",
    "row_frequency",
    "row_intervals",
    "weighted_band_map",
]
