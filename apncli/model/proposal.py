"""Suspicious frequency-band proposal (reference §2.2).

One :class:`BandProposer` looks at a spectrum component (amplitude or phase, Bx3xHxW') and proposes K
bands per colour channel: a row interval from the x-proposer and a column interval from the y-proposer.
Boundaries are sigmoid offsets from K fixed anchors linspace(0, anchor_max, K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class BandProposal:
    """Boundaries of K proposals per colour channel, all shaped (B, 3, K), normalised to [0, ~2).

    ``raw_*`` are before the validity filter (what L_band penalises); the filtered ``starts_*``/``ends_*``
    are zero where ``valid_*`` is False, which the mask turns into the DC row / DC column. ``scores_x`` and
    ``scores_y`` are the two score heads' p, zeroed where invalid like the code does, but used nowhere
    downstream (§8.3): the paper's network never reads them, so neither do we.
    """

    raw_starts_x: Tensor
    raw_ends_x: Tensor
    raw_starts_y: Tensor
    raw_ends_y: Tensor
    starts_x: Tensor
    ends_x: Tensor
    starts_y: Tensor
    ends_y: Tensor
    valid_x: Tensor
    valid_y: Tensor
    scores_x: Tensor
    scores_y: Tensor

    @property
    def scores(self) -> Tensor:
        """(B, 3, K) summary of the unused score heads: the mean of the per-axis p."""
        return (self.scores_x + self.scores_y) / 2

    def permuted(self) -> BandProposal:
        """The same proposal with every tensor moved from (B, 3, K) to (B, K, 3) (mask/batch order).

        Contiguous copies, not views (the tensors are tiny): masks built from them then come out with
        (B, K, 3) as contiguous leading dims, the order of the K-fold spectra, irfft2 and the band heads.
        """
        return BandProposal(**{k: v.transpose(1, 2).contiguous() for k, v in vars(self).items()})


# The proposers' convolutions have 3 channels, on which oneDNN is erratic: 0.6-2 ms per 1x1 call on
# 4x3x128x65 with two intra-op threads (its arithmetic needs ~0.04 ms), up to 40 ms of a 73-ms forward.
# Written as the same sums with plain tensor ops they cost 0.04-0.3 ms a call on any backend and layout:
# the whole forward 0.75x with two threads, unchanged with one (AMD EPYC, 4 crops of 128 px). The modules
# keep their parameters, so checkpoints and training are unchanged; outputs equal the convolutions' up to
# float rounding (tests/model/test_apn_proposal.py).


def _pointwise(x: Tensor, weight: Tensor) -> Tensor:
    """A bias-free 1x1 convolution, (B,C,H,W) → (B,O,H,W), with ``weight`` (O,C,1,1)."""
    return torch.einsum("oc,bchw->bohw", weight.flatten(1), x)


def _depthwise3x3(x: Tensor, weight: Tensor) -> Tensor:
    """A bias-free, zero-padded 3x3 depthwise convolution of (B,C,H,W) with ``weight`` (C,1,3,3)."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    taps = weight.flatten(1).unsqueeze(-1).unsqueeze(-1)  # (C, 9, 1, 1)
    out = padded[..., :height, :width] * taps[:, 0]
    for tap in range(1, 9):  # accumulated in place: no temporary map per tap (0.54x a call, 16x3x128x65)
        i, j = divmod(tap, 3)
        out.addcmul_(padded[..., i:i + height, j:j + width], taps[:, tap])
    return out


def _neighbour_sum(y: Tensor) -> Tensor:
    """(B,C,L,3) → (B,C,L): out[l] = y[l-1, 0] + y[l, 1] + y[l+1, 2], zero beyond the ends."""
    return y[..., 1] + F.pad(y[..., :-1, 0], (1, 0)) + F.pad(y[..., 1:, 2], (0, 1))


class Bottleneck3(nn.Module):
    """Residual 1x1 → grouped 3x3 → 1x1 block on the 3 colour channels (no width expansion)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(_pointwise(x, self.conv1.weight)))
        out = self.relu(self.bn2(_depthwise3x3(out, self.conv2.weight)))
        return self.relu(self.bn3(_pointwise(out, self.conv3.weight)) + x)


def _head(length: int, out: int) -> nn.Sequential:
    """L → L/4 → L/4 → L/4 → out MLP with ReLUs and a final sigmoid (score and boundary heads)."""
    q = max(length // 4, 1)
    return nn.Sequential(
        nn.Linear(length, q),
        nn.ReLU(inplace=True),
        nn.Linear(q, q),
        nn.ReLU(inplace=True),
        nn.Linear(q, q),
        nn.ReLU(inplace=True),
        nn.Linear(q, out),
        nn.Sigmoid(),
    )


class AxisProposer(nn.Module):
    """Proposes K intervals along one spectrum axis per colour channel.

    The grouped conv with a kernel spanning the *other* axis collapses the spectrum into a per-channel
    profile of length L, which a shared per-channel MLP neck turns into scores and boundary offsets.
    """

    def __init__(self, axis: str, height: int, width: int, num_bands: int, blocks: int, neck: int) -> None:
        super().__init__()
        if axis not in ("x", "y"):
            raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
        self.axis = axis
        length = height if axis == "x" else width
        kernel, padding = ((3, width), (1, 0)) if axis == "x" else ((height, 3), (0, 1))
        self.body = nn.Sequential(*[Bottleneck3() for _ in range(blocks)])
        self.collapse = nn.Conv2d(3, 3, kernel, padding=padding, groups=3)
        self.neck = nn.Sequential(*[m for _ in range(neck) for m in (nn.Linear(length, length), nn.ReLU())])
        # The paper's code computes p but nothing downstream reads it (reference §8.3), so it can never get
        # a gradient; frozen, it stays out of optimisers and cannot trip DDP's unused-parameter check.
        self.score_head = _head(length, num_bands).requires_grad_(False)
        self.boundary_head = _head(length, 2 * num_bands)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(B,3,H,W') → scores (B,3,K) and boundary offsets (B,3,2K) in (0,1)."""
        feat = self.neck(self._collapse(self.body(z)))
        return self.score_head(feat), self.boundary_head(feat)

    def _collapse(self, z: Tensor) -> Tensor:
        """``self.collapse`` as sums: (B,3,H,W') → the (B,3,L) profile (L = H for x, W' for y).

        x: kernel (3, W'), row padding 1, so profile[h] = Σ_i Σ_w k[i, w] z[h+i-1, w]; y is the transpose.
        """
        kernel = self.collapse.weight.squeeze(1)  # x: (3, 3, W'); y: (3, H, 3)
        if self.axis == "x":
            taps = torch.einsum("bchw,ciw->bchi", z, kernel)
        else:
            taps = torch.einsum("bchw,chj->bcwj", z, kernel)
        return _neighbour_sum(taps) + self.collapse.bias.view(1, -1, 1)


class BandProposer(nn.Module):
    """BatchNorm2d(3) → x-proposer (rows) and y-proposer (columns) → anchored boundaries → validity filter."""

    anchors: Tensor

    def __init__(
        self, height: int, width: int, num_bands: int, blocks: int = 3, neck: int = 4, anchor_max: float = 0.9
    ) -> None:
        super().__init__()
        self.num_bands = num_bands
        self.norm = nn.BatchNorm2d(3)
        self.x_proposer = AxisProposer("x", height, width, num_bands, blocks, neck)
        self.y_proposer = AxisProposer("y", height, width, num_bands, blocks, neck)
        self.register_buffer("anchors", torch.linspace(0.0, anchor_max, num_bands), persistent=False)

    def _boundaries(self, offsets: Tensor) -> tuple[Tensor, Tensor]:
        k = self.num_bands
        return offsets[..., :k] + self.anchors, offsets[..., k:] + self.anchors

    def forward(self, z: Tensor) -> BandProposal:
        z = self.norm(z)
        p_x, off_x = self.x_proposer(z)
        p_y, off_y = self.y_proposer(z)
        sx, ex = self._boundaries(off_x)
        sy, ey = self._boundaries(off_y)
        vx, vy = ex > sx, ey > sy
        zero = torch.zeros((), dtype=sx.dtype, device=sx.device)
        return BandProposal(
            raw_starts_x=sx,
            raw_ends_x=ex,
            raw_starts_y=sy,
            raw_ends_y=ey,
            starts_x=torch.where(vx, sx, zero),
            ends_x=torch.where(vx, ex, zero),
            starts_y=torch.where(vy, sy, zero),
            ends_y=torch.where(vy, ey, zero),
            valid_x=vx,
            valid_y=vy,
            scores_x=torch.where(vx, p_x, zero),
            scores_y=torch.where(vy, p_y, zero),
        )


__all__ = ["AxisProposer", "BandProposal", "BandProposer", "Bottleneck3"]
