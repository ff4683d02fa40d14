"""Suspicious frequency-band proposal (reference §2.2).

One :class:`BandProposer` looks at a spectrum component (amplitude or phase, Bx3xHxW') and proposes K
bands per colour channel: a row interval from the x-proposer and a column interval from the y-proposer.
Boundaries are sigmoid offsets from K fixed anchors linspace(0, anchor_max, K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
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
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + x)


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
        profile = self.collapse(self.body(z))
        profile = profile.flatten(2)  # x: (B,3,H,1) → (B,3,H); y: (B,3,1,W') → (B,3,W')
        feat = self.neck(profile)
        return self.score_head(feat), self.boundary_head(feat)


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
        # NCHW-contiguous: on a channels-last input the 3-channel 1x1 convolutions take oneDNN's slow path
        # (10x slower per call on AMD EPYC; the whole forward 0.87x with NCHW, same logits). See
        # docs/performance.md.
        z = self.norm(z.contiguous())
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
