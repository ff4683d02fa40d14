"""Spectra, band masks and the artifact/irrelevant split (reference §2.1, §2.3, §2.4).

Everything is on the *unshifted* rfft2 grid: rows u = 0..H-1 in standard FFT order, columns v = 0..W'-1
with W' = W//2 + 1. A band is the union of a row stripe and a column stripe (a "cross"), per colour
channel, separately for amplitude and phase. All functions are batched tensor ops: no Python loops over
batch or proposals, because this runs 2·K times per image on the hot path.
"""

from __future__ import annotations

import torch
from torch import Tensor


def polar(freq: Tensor) -> tuple[Tensor, Tensor]:
    """Linear amplitude |X| and phase angle(X) in (-pi, pi] of a complex spectrum."""
    return freq.abs(), freq.angle()


def spectrum(x: Tensor) -> tuple[Tensor, Tensor]:
    """Amplitude and phase of rfft2(x) over the last two dims (no log, no fftshift, no mean removal)."""
    return polar(torch.fft.rfft2(x))


def recombine(amp: Tensor, phase: Tensor, size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`spectrum`: irfft2(amp·e^{i·phase}) with output size ``size`` = (H, W)."""
    return torch.fft.irfft2(torch.complex(amp * torch.cos(phase), amp * torch.sin(phase)), s=size)


def _hard_stripe(starts: Tensor, ends: Tensor, length: int) -> Tensor:
    """Bool 1[a <= u <= b] with a, b = clamp(floor(s·L), 0, L-1); no gradient, as in the paper's code."""
    a = (starts.detach() * length).floor().clamp(0, length - 1)
    b = (ends.detach() * length).floor().clamp(0, length - 1)
    u = torch.arange(length, device=starts.device, dtype=a.dtype)
    return (a.unsqueeze(-1) <= u) & (u <= b.unsqueeze(-1))


def _soft_stripe(starts: Tensor, ends: Tensor, length: int, tau: float) -> Tensor:
    """sigmoid((u-a+½)/tau)·sigmoid((b-u+½)/tau): a ramp version of the hard stripe, differentiable in s, e.

    The ±½ puts each ramp half a bin outside the continuous edge, so at small tau it tends to the hard
    stripe, up to the hard mask's floor (a discontinuity no ramp can follow) moving an edge by one bin.
    No clamping: a boundary past the grid still selects the edge bin, as the hard clamp does, but keeps a
    (small) gradient.
    """
    a = (starts * length).unsqueeze(-1)
    b = (ends * length).unsqueeze(-1)
    u = torch.arange(length, device=starts.device, dtype=starts.dtype)
    return torch.sigmoid((u - a + 0.5) / tau) * torch.sigmoid((b - u + 0.5) / tau)


def band_masks(
    starts_x: Tensor,
    ends_x: Tensor,
    starts_y: Tensor,
    ends_y: Tensor,
    H: int,
    W_half: int,
    mode: str = "hard",
    tau: float = 1.5,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Masks M(u, v) = R(u) or C(v), shape ``(..., H, W_half)``, for normalised boundaries shaped ``(...)``.

    ``x`` boundaries select rows (length H), ``y`` boundaries select columns (length W_half). Hard masks
    are binary (``dtype`` defaults to the boundaries' dtype; ``torch.bool`` gives the cheap form the split
    uses); an invalid proposal (s = e = 0) selects the DC row or DC column, as in the code.
    ``mode="soft"`` is the non-paper differentiable variant; its union is the soft OR r + c - r·c.
    ``mode="straight-through"`` (non-paper too) has the hard mask's values and the soft mask's gradient.
    """
    dtype = dtype or starts_x.dtype
    if mode not in ("hard", "soft", "straight-through"):
        raise ValueError(f"unknown band-mask mode {mode!r}")
    if mode != "hard" and dtype == torch.bool:
        raise ValueError(f"{mode} band masks cannot be boolean")
    if mode != "soft":
        rows = _hard_stripe(starts_x, ends_x, H).unsqueeze(-1)
        cols = _hard_stripe(starts_y, ends_y, W_half).unsqueeze(-2)
        hard = _bool_or(rows, cols).to(dtype)
        if mode == "hard":
            return hard
    r = _soft_stripe(starts_x, ends_x, H, tau).unsqueeze(-1)
    c = _soft_stripe(starts_y, ends_y, W_half, tau).unsqueeze(-2)
    soft = (r + c - r * c).to(dtype)
    return soft if mode == "soft" else hard + (soft - soft.detach())


def _bool_or(a: Tensor, b: Tensor) -> Tensor:
    """Broadcasting ``a | b`` of bool tensors computed on uint8 views: same bits, but vectorised on CPU
    (about 15x faster than the bool kernel), which matters because the masks are K-fold spectra."""
    return (a.view(torch.uint8) | b.view(torch.uint8)).view(torch.bool)


def split_bands(
    freq: Tensor,
    amp_masks: Tensor,
    phase_masks: Tensor,
    size: tuple[int, int],
    irrelevant: bool = True,
    polar_parts: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Artifact and irrelevant images for every proposal, batched over (B, K, 3) (reference §2.4).

    ``freq``: rfft2 of the input, (B, 3, H, W'); masks: (B, K, 3, H, W'). Returns two (B, K, 3, H, W)
    tensors x_art = irfft2(M_A·A · e^{i·M_P·P}) and x_irr = irfft2((A - M_A·A) · e^{i·(P - M_P·P)});
    x_irr is None when ``irrelevant`` is False (inference does not need it). ``polar_parts`` is
    ``polar(freq)`` when the caller already has it (saves recomputing it).

    The K-fold spectra take the masks' memory layout. Masks stored column-major, i.e. a
    ``.transpose(-1, -2)`` view of contiguous (B, K, 3, W', H) tensors, are the fast case: irfft2's first
    pass (over H) then needs no transposing copy, and its output comes out contiguous.
    """
    amp = freq.abs() if polar_parts is None else polar_parts[0]
    freq, amp = (_layout_like(t.unsqueeze(1), amp_masks) for t in (freq, amp))
    if amp_masks.dtype == torch.bool and phase_masks.dtype == torch.bool:
        art, irr = _split_hard(freq, amp, amp_masks, phase_masks, irrelevant)
    else:
        phase = freq.angle() if polar_parts is None else _layout_like(polar_parts[1].unsqueeze(1), amp_masks)
        amp_art, phase_art = amp_masks * amp, phase_masks * phase
        art = torch.polar(amp_art, phase_art)
        irr = torch.polar(amp - amp_art, phase - phase_art) if irrelevant else None
    width = size[-1]
    art = torch.fft.irfft2(hermitian_edges(art, width), s=size)
    return art, None if irr is None else torch.fft.irfft2(hermitian_edges(irr, width), s=size)


def hermitian_edges(spec: Tensor, width: int) -> Tensor:
    """Make columns 0 and W/2 (W even) of a half spectrum Hermitian along the rows; returns the result
    (``spec`` itself, changed in place, unless autograd needs ``spec`` unchanged: then a copy).

    rfft2 of a real image has X[-u, 0] = conj(X[u, 0]) (and likewise at column W/2), and irfft2 assumes it.
    A band mask breaks it (a row stripe is not symmetric in u), and how an inverse FFT treats those
    columns then depends on the backend: the CPU's drops the imaginary part of the row transform, which
    equals this projection ((X[u] + conj(X[-u])) / 2), while others may read only half of the rows. After
    the projection every backend computes the same image (and the CPU the same as without it).
    ``spec``: (..., H, W') complex, any memory layout.
    """
    if spec.requires_grad:
        spec = spec.clone()
    rows = spec.shape[-2]
    mirror = (-torch.arange(rows, device=spec.device)) % rows
    for column in (0, width // 2) if width % 2 == 0 else (0,):
        edge = spec[..., column]
        spec[..., column] = (edge + edge[..., mirror].conj()) / 2
    return spec


def _layout_like(t: Tensor, masks: Tensor) -> Tensor:
    """``t`` stored column-major in its last two dims if ``masks`` are (a one-off copy of the 1-fold
    spectrum), so that elementwise results with the K-fold masks keep the masks' layout."""
    if masks.stride(-2) == 1 and masks.stride(-1) != 1:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t


def _split_hard(
    freq: Tensor, amp: Tensor, amp_masks: Tensor, phase_masks: Tensor, irrelevant: bool
) -> tuple[Tensor, Tensor | None]:
    """The hard-mask spectra without trigonometry: the generic formula's values at a fraction of the cost.

    With binary masks each bin of A_k·e^{iP_k} is X itself (amplitude and phase kept), |X| (amplitude
    kept, phase zeroed: the code's in-band-amplitude/out-of-band-phase quirk) or 0 (amplitude removed).
    Two allocations of the K-fold spectrum, filled in place, because this is memory-bound.
    """
    amp = amp.to(freq.dtype)
    outside = (amp_masks.view(torch.uint8) ^ 1).view(torch.bool)  # ~amp_masks, vectorised (see _bool_or)
    art = torch.where(phase_masks, freq, amp).masked_fill_(outside, 0)
    if not irrelevant:
        return art, None
    return art, torch.where(phase_masks, amp, freq).masked_fill_(amp_masks, 0)


__all__ = ["band_masks", "hermitian_edges", "polar", "recombine", "spectrum", "split_bands"]
