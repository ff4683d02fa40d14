"""TAEF2: a tiny autoencoder for the FLUX.2 latent space (architecture of madebyollin/taesd, MIT).

Why it is here: passing a real photo through encoder -> decoder yields an *aligned* fake — the same
content, but every pixel re-synthesised by a latent-diffusion-style decoder. Training on real vs. its
reconstruction teaches a detector decoder traces instead of content.

Parameter names mirror the published ``taef2_encoder.pth`` / ``taef2_decoder.pth`` state dicts exactly
(``nn.Sequential`` indices, ``Block.conv.{0,2,4}``, ``Block.pool.{0,1,3}``), so
``load_state_dict(strict=True)`` works. Images are RGB in [0, 1]; sides must be multiples of 8.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

LATENT_CHANNELS = 32
SCALE_FACTOR = 8
_WIDTH = 64


def _conv(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of latents to about [-3, 3]; the decoder was trained behind it, so it must stay."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block; ``group_norm`` adds the GroupNorm "pool" branch TAEF2 uses at the lowest scale."""

    def __init__(self, channels: int = _WIDTH, group_norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(channels, channels),
            nn.ReLU(),
            _conv(channels, channels),
            nn.ReLU(),
            _conv(channels, channels),
        )
        # Registered only when used: the published keys have ``pool.*`` exactly for the GN blocks.
        self.pool: nn.Sequential | None = None
        if group_norm:
            hidden = channels * 4
            self.pool = nn.Sequential(
                nn.Conv2d(channels, hidden, 1, bias=False),
                nn.GroupNorm(4, hidden),
                nn.ReLU(),
                nn.Conv2d(hidden, channels, 1, bias=False),
            )
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


class TAEEncoder(nn.Sequential):
    """RGB [0,1] (B,3,H,W) -> latent (B,32,H/8,W/8); indices 0..14 as in the published weights."""

    def __init__(self) -> None:
        w = _WIDTH
        super().__init__(
            _conv(3, w), Block(w),
            _conv(w, w, stride=2, bias=False), Block(w), Block(w), Block(w),
            _conv(w, w, stride=2, bias=False), Block(w), Block(w), Block(w),
            _conv(w, w, stride=2, bias=False), Block(w, True), Block(w, True), Block(w, True),
            _conv(w, LATENT_CHANNELS),
        )  # fmt: skip


class TAEDecoder(nn.Sequential):
    """Latent (B,32,h,w) -> RGB (B,3,8h,8w), unclamped; indices 0..19 as in the published weights."""

    def __init__(self) -> None:
        w = _WIDTH
        super().__init__(
            Clamp(), _conv(LATENT_CHANNELS, w), nn.ReLU(),
            Block(w, True), Block(w, True), Block(w, True),
            nn.Upsample(scale_factor=2), _conv(w, w, bias=False), Block(w), Block(w), Block(w),
            nn.Upsample(scale_factor=2), _conv(w, w, bias=False), Block(w), Block(w), Block(w),
            nn.Upsample(scale_factor=2), _conv(w, w, bias=False), Block(w),
            _conv(w, 3),
        )  # fmt: skip


class TinyAutoencoder(nn.Module):
    """Encoder + decoder pair with shape checks and the [0, 1] output clamp."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = TAEEncoder()
        self.decoder = TAEDecoder()

    @classmethod
    def from_state_dicts(
        cls, encoder_state: Mapping[str, torch.Tensor], decoder_state: Mapping[str, torch.Tensor]
    ) -> TinyAutoencoder:
        """Build a float32 model from (possibly fp16) state dicts, strictly: a wrong file must not load."""
        model = cls()
        model.encoder.load_state_dict(encoder_state, strict=True)
        model.decoder.load_state_dict(decoder_state, strict=True)
        return model.eval()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1], H and W multiples of 8 -> (B,32,H/8,W/8)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % SCALE_FACTOR or w % SCALE_FACTOR or h == 0 or w == 0:
            raise ValueError(f"height and width must be positive multiples of {SCALE_FACTOR}, got {h}x{w}")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B,32,h,w) -> (B,3,8h,8w) clamped to [0,1]."""
        if z.ndim != 4 or z.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"expected a (B, {LATENT_CHANNELS}, h, w) latent, got shape {tuple(z.shape)}")
        return self.decoder(z).clamp(0, 1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Round trip through the latent space: same shape out as in."""
        return self.decode(self.encode(x))

    forward = reconstruct
