"""The Artifact Purification Network (reference §1-§3).

Explicit purification happens here: the frequency branch splits each image into K artifact-related and K
artifact-irrelevant images via proposed spectral bands, and the spatial branch projects its feature onto
two learnable subspaces. Implicit purification (alignment losses, CLUB) lives in training.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .backbones import ConvNeXt, ResNet
from .config import PRETRAINED_TRUNKS, APNConfig, get_config
from .efficientnet import EfficientNetLite
from .proposal import BandProposal, BandProposer
from .spectrum import band_masks, polar, split_bands


@dataclass
class APNOutput:
    """Everything one forward produces; features are (B, D), logits (B, 2) with class 1 = AI-generated.

    ``logits`` (from the fused artifact feature) is the only output used at inference; the others feed
    the training losses and ``explain``. ``art_images``/``irr_images`` are (B, K, 3, H, W) only when
    requested, because keeping them costs 2·K images of memory per input. The ``f_irr*`` features are
    None only when the forward was asked not to compute them (``irrelevant=False``); ``amplitude``/``phase``
    only for a model without the frequency branch (``config.branches == "spatial"``).
    """

    logits: Tensor
    logits_freq: Tensor
    logits_spatial: Tensor
    f_art: Tensor
    f_irr: Tensor | None
    f_art_spatial: Tensor
    f_irr_spatial: Tensor | None
    f_art_freq: Tensor
    f_irr_freq: Tensor | None
    band_weights: Tensor
    amplitude: BandProposal | None
    phase: BandProposal | None
    art_images: Tensor | None = None
    irr_images: Tensor | None = None


@dataclass
class _Features:
    """One branch's (B, D) artifact feature and artifact-irrelevant feature (None when not computed)."""

    art: Tensor
    irr: Tensor | None


@dataclass
class _FrequencyBranch:
    features: _Features
    weights: Tensor
    amplitude: BandProposal
    phase: BandProposal
    art_images: Tensor
    irr_images: Tensor | None


class SpatialBases(nn.Module):
    """Two learnable rank-r bases of the spatial feature space (reference §3, "SpaceBase").

    Initialised to [I | 0] (semantic) and [0 | I] (generative), i.e. a split of F into its first and last
    r dims that training may rotate slightly (the bases get a tiny learning rate).
    """

    def __init__(self, rank: int, dim: int) -> None:
        super().__init__()
        eye = torch.eye(rank)
        self.semantic_base = nn.Parameter(torch.cat((eye, torch.zeros(rank, dim - rank)), dim=1))
        self.generative_base = nn.Parameter(torch.cat((torch.zeros(rank, dim - rank), eye), dim=1))

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """F → (f_irr, f_art) = ((F Bᵀ_irr) B_irr, (F Bᵀ_art) B_art)."""
        f_irr = (feat @ self.semantic_base.T) @ self.semantic_base
        f_art = (feat @ self.generative_base.T) @ self.generative_base
        return f_irr, f_art


def _mlp(sizes: Sequence[int], final: nn.Module | None = None) -> nn.Sequential:
    """Linear layers through ``sizes`` with ReLU between them (not after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class ImageNetTrunk(nn.Module):
    """An EfficientNet-Lite trunk on APN's input, with an optional APN head (reference §1.3's, minus the
    LayerNorm that only ConvNeXt has).

    APN images are BGR in [0, 1] (the paper's preprocessing); the ImageNet weights expect RGB scaled to
    [-1, 1] (mean = std = 0.5), so the input is converted here, inside the network. Output: (B, 1280)
    pooled features, or (B, ``out_dim``) through Linear → ReLU → Linear when ``out_dim`` is given.
    """

    def __init__(self, variant: str, out_dim: int | None = None) -> None:
        super().__init__()
        self.trunk = EfficientNetLite(variant)
        width = self.trunk.out_dim
        self.classifier: nn.Module = nn.Identity()
        if out_dim is not None:
            self.classifier = _mlp((width, out_dim, out_dim))
        self.out_dim = out_dim or width

    def forward(self, x: Tensor) -> Tensor:
        # Channels-last input: oneDNN's depthwise kernels are several times faster on it (a stride-2
        # "SAME"-padded 3x3 one 18x on AMD EPYC; the trunk 0.79x at 4x128 px, one thread); same values.
        rgb = (x.flip(1) * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)
        return self.classifier(self.trunk(rgb))


def _spatial_branch(c: APNConfig) -> nn.Module:
    if c.spatial_backbone in PRETRAINED_TRUNKS:
        return ImageNetTrunk(c.spatial_backbone, c.feature_dim)
    return ConvNeXt(c.convnext_widths, c.convnext_depths, c.feature_dim, c.stochastic_depth)


def _band_head(c: APNConfig, trunk: str) -> nn.Module:
    if trunk in PRETRAINED_TRUNKS:
        return ImageNetTrunk(trunk)
    return ResNet(c.resnet_widths, c.resnet_blocks)


class APN(nn.Module):
    """APN over Bx3xcropxcrop BGR images in [0, 1] (no ImageNet normalisation, as in the paper's code)."""

    def __init__(self, config: APNConfig) -> None:
        super().__init__()
        c = self.config = config
        height, width = c.crop, c.spectrum_width
        self.spatial_backbone = _spatial_branch(c)
        self.spatial_bases = SpatialBases(c.base_rank, c.feature_dim)
        proposer = dict(blocks=c.proposer_blocks, neck=c.proposer_neck, anchor_max=c.anchor_max)
        self.amplitude_proposer = BandProposer(height, width, c.num_bands, **proposer)
        self.phase_proposer = BandProposer(height, width, c.num_bands, **proposer)
        self.generative_head = ResNet(c.resnet_widths, c.resnet_blocks)  # from scratch, on x_art
        self.semantic_head = _band_head(c, c.semantic_trunk)  # ImageNet-initialisable, on x_irr
        self.semantic_head.requires_grad_(not c.semantic_frozen)
        bdim = c.band_feature_dim
        self.attention = nn.MultiheadAttention(bdim, c.attention_heads, batch_first=True)
        self.attention_mlp = _mlp((bdim, *c.attention_hidden, 1), nn.Sigmoid())
        self.art_proj = nn.Linear(bdim, c.feature_dim)
        self.irr_proj = nn.Linear(self.semantic_head.out_dim, c.feature_dim)
        self.classifier = _mlp((c.feature_dim, *c.classifier_hidden, 2))

    # -- parameter groups -------------------------------------------------------------------------------
    def base_parameters(self) -> list[nn.Parameter]:
        """The decomposition bases, which the paper trains with their own (1e-7) learning rate."""
        return list(self.spatial_bases.parameters())

    def other_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter except the decomposition bases (frozen score heads left out)."""
        bases = {id(p) for p in self.base_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in bases]

    def train(self, mode: bool = True) -> APN:
        """As ``nn.Module.train``, but a frozen semantic trunk keeps its ImageNet BatchNorm statistics."""
        super().train(mode)
        if self.config.semantic_frozen:
            self.semantic_head.eval()
        return self

    # -- forward ----------------------------------------------------------------------------------------
    def forward(self, x: Tensor, return_images: bool = False, irrelevant: bool = True) -> APNOutput:
        """Run the configured branches (both, as in the paper, unless ``config.branches`` ablates one) on a
        batch of BGR crops.

        ``irrelevant=False`` skips the semantic band head and leaves ``f_irr``, ``f_irr_freq`` and
        ``irr_images`` as None: the logits do not depend on them, so inference saves about a third of the
        work (B·K images through a ResNet and as many inverse FFTs). A missing branch's features alias the
        other branch's; without the frequency branch ``amplitude``/``phase`` are None and ``band_weights``
        is (B, 0).
        """
        self._check_input(x)
        branches = self.config.branches
        spatial = freq = None
        if branches != "frequency":
            f_irr_s, f_art_s = self.spatial_bases(self.spatial_backbone(x))
            spatial = _Features(f_art_s, f_irr_s if irrelevant else None)
        if branches != "spatial":
            freq = self._frequency_branch(x, irrelevant)
        s = spatial if spatial is not None else freq.features  # type: ignore[union-attr]
        f = freq.features if freq is not None else spatial
        assert f is not None
        f_art = (s.art + f.art) / 2
        f_irr = None if s.irr is None or f.irr is None else (s.irr + f.irr) / 2
        return APNOutput(
            logits=self.classifier(f_art),
            logits_freq=self.classifier(f.art),
            logits_spatial=self.classifier(s.art),
            f_art=f_art,
            f_irr=f_irr,
            f_art_spatial=s.art,
            f_irr_spatial=s.irr,
            f_art_freq=f.art,
            f_irr_freq=f.irr,
            band_weights=freq.weights if freq else x.new_zeros(x.shape[0], 0),
            amplitude=freq.amplitude if freq else None,
            phase=freq.phase if freq else None,
            art_images=freq.art_images if freq and return_images else None,
            irr_images=freq.irr_images if freq and return_images else None,
        )

    def _frequency_branch(self, x: Tensor, irrelevant: bool) -> _FrequencyBranch:
        """Band proposal, split into K artifact / K irrelevant images, per-band heads (reference §2)."""
        batch, k = x.shape[0], self.config.num_bands
        with torch.autocast(device_type=x.device.type, enabled=False):  # FFTs need fp32 at non-2^n sizes
            freq = torch.fft.rfft2(x.float())
            amp, phase = polar(freq)
            prop_a, prop_p = self.amplitude_proposer(amp), self.phase_proposer(phase)
            masks = self._masks(prop_a, for_split=True), self._masks(prop_p, for_split=True)
            art, irr = split_bands(freq, *masks, x.shape[-2:], irrelevant, (amp, phase))
        g = self._run_head(self.generative_head, art).view(batch, k, -1)
        attended = self.attention(g, g, g, need_weights=False)[0]
        weights = self.attention_mlp(attended).squeeze(-1)
        f_art = (weights.unsqueeze(-1) * self.art_proj(g)).sum(1)  # not normalised: sum(w) != 1 (§8.11)
        f_irr = None
        if irr is not None:
            if self.config.semantic_frozen:  # a fixed feature extractor: no gradient through it
                with torch.no_grad():
                    h = self._run_head(self.semantic_head, irr.detach())
            else:
                h = self._run_head(self.semantic_head, irr)
            f_irr = self.irr_proj(h.view(batch, k, -1)).mean(1)
        return _FrequencyBranch(_Features(f_art, f_irr), weights, prop_a, prop_p, art, irr)

    def probability(self, x: Tensor) -> Tensor:
        """p(AI-generated) = softmax(logits)[:, 1], shape (B,); skips the features the logits don't use."""
        return torch.softmax(self(x, irrelevant=False).logits, dim=-1)[:, 1]

    def band_masks(self, output: APNOutput) -> dict[str, Tensor]:
        """The (B, 3, K, H, W') masks behind ``output`` for amplitude and phase (for ``explain``)."""
        return {"amplitude": self._masks(output.amplitude), "phase": self._masks(output.phase)}

    def _masks(self, prop: BandProposal, for_split: bool = False) -> Tensor:
        """(B, 3, K, H, W') float masks of a proposal, or (B, K, 3, H, W') in the split's cheap form.

        The split form is bool for hard masks and column-major: built as (B, K, 3, W', H) (rows and
        columns swapped; the union is symmetric) and returned as a transposed view: the layout that saves
        ``split_bands`` the layout copies around irfft2 (see there).
        """
        c = self.config
        if not for_split:
            bounds = (prop.starts_x, prop.ends_x, prop.starts_y, prop.ends_y)
            return band_masks(*bounds, c.crop, c.spectrum_width, mode=c.mask, tau=c.soft_mask_tau)
        prop = prop.permuted()
        bounds = (prop.starts_y, prop.ends_y, prop.starts_x, prop.ends_x)  # swapped: columns as rows
        dtype = torch.bool if c.mask == "hard" else None
        masks = band_masks(*bounds, c.spectrum_width, c.crop, mode=c.mask, tau=c.soft_mask_tau, dtype=dtype)
        return masks.transpose(-1, -2)

    @staticmethod
    def _run_head(head: nn.Module, images: Tensor) -> Tensor:
        """One batched call over all B·K band images, fed channels-last (faster on CPU and tensor cores)."""
        return head(images.flatten(0, 1).contiguous(memory_format=torch.channels_last))

    def _check_input(self, x: Tensor) -> None:
        crop = self.config.crop
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, crop, crop):
            raise ValueError(
                f"APN '{self.config.name}' expects Bx3x{crop}x{crop} input, got {tuple(x.shape)}"
            )


def build_model(config_or_name: APNConfig | str) -> APN:
    """An APN from a config or a registered config name."""
    config = get_config(config_or_name) if isinstance(config_or_name, str) else config_or_name
    return APN(config)


@dataclass(frozen=True)
class _Source:
    """Where a named ImageNet state dict goes: which submodules (when the config names this trunk there),
    which entries of the file are a classifier APN replaces, and which of the target's are APN's own head."""

    targets: tuple[tuple[str, str], ...]  # (config attribute that must equal the name, module path)
    file_head: tuple[str, ...]
    own_head: tuple[str, ...]


_IMAGENET_TRUNK_TARGETS = (
    ("spatial_backbone", "spatial_backbone.trunk"),
    ("semantic_trunk", "semantic_head.trunk"),
)
_SOURCES = {
    # torchvision's classifier is [LayerNorm2d, Flatten, Linear(1024, 1000)]: its LayerNorm is kept (APN's
    # head starts with the same LayerNorm2d), its Linear is replaced by APN's Linear → ReLU → Linear.
    "convnext_base": _Source((("spatial_backbone", "spatial_backbone"),), ("classifier.2.",),
                             ("classifier.2.", "classifier.4.")),
    "resnet18": _Source((("semantic_trunk", "semantic_head"),), ("fc.",), ()),
    **{name: _Source(_IMAGENET_TRUNK_TARGETS, ("_fc.",), ()) for name in PRETRAINED_TRUNKS},
}


def load_backbone_weights(model: APN, name: str, state_dict: Mapping[str, Tensor]) -> int:
    """Load an ImageNet state dict into every trunk the config builds from it; returns the tensors loaded.

    ``"convnext_base"`` (torchvision) goes into the spatial backbone, ``"resnet18"`` (torchvision) into the
    semantic band head (the generative head stays random, as in the paper), an ``"efficientnet_lite*"``
    (lukemelas layout) into the spatial branch and/or the semantic head, wherever the config names it. The
    trunk must match exactly (every key, every shape); only the file's classification head (``fc.*``,
    ``_fc.*``, torchvision ConvNeXt's final Linear) is ignored, since APN replaces it, and BatchNorm
    ``num_batches_tracked`` counters may be absent, as in checkpoints older than PyTorch 0.4.1.
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(_SOURCES)}")
    source = _SOURCES[name]
    targets = [path for field, path in source.targets if getattr(model.config, field) == name]
    if not targets:
        fields = ", ".join(f"{f}={getattr(model.config, f)!r}" for f, _ in source.targets)
        raise ValueError(f"config {model.config.name!r} has {fields}, not {name!r}")
    given = {k: v for k, v in state_dict.items() if not k.startswith(source.file_head)}
    for path in targets:
        target: nn.Module = model.get_submodule(path)
        expected = {k: v for k, v in target.state_dict().items() if not k.startswith(source.own_head)}
        _check_same_trunk(name, expected, given)
        target.load_state_dict(given, strict=False)
    return len(given) * len(targets)


def _check_same_trunk(name: str, expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> None:
    missing = sorted(k for k in set(expected) - set(given) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{name} state dict does not match the trunk: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    wrong = [k for k in given if tuple(expected[k].shape) != tuple(given[k].shape)]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"{name} state dict has {len(wrong)} shape mismatch(es), e.g. {k}: "
            f"{tuple(given[k].shape)} vs {tuple(expected[k].shape)}"
        )


__all__ = ["APN", "APNOutput", "ImageNetTrunk", "SpatialBases", "build_model", "load_backbone_weights"]
