"""ConvNeXt and ResNet in plain PyTorch, with torchvision's parameter names.

Written here instead of importing torchvision so the package has no torchvision dependency, while the
official ImageNet state dicts (``convnext_base``, ``resnet18``) still load name-for-name into the trunks.
Widths and depths are configurable so the ``lite`` variants reuse the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW tensor (torchvision's ``LayerNorm2d``)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """Parameter-free permute, kept as a module so ``block.N`` indices match torchvision."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)


class StochasticDepth(nn.Module):
    """Row-mode drop-path: zero a whole sample's residual branch with probability p (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * noise.bernoulli_(keep).div_(keep)


class CNBlock(nn.Module):
    """ConvNeXt block: dw7x7 → LN → Linear(4x) → GELU → Linear → layer scale → drop-path → residual."""

    def __init__(self, dim: int, layer_scale: float, sd_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(nn.Module):
    """ConvNeXt trunk (``features``, ``avgpool``) with the APN head in ``classifier``.

    The head is LayerNorm2d → Flatten → Linear(C, out) → ReLU → Linear(out, out) (reference §1.3), so
    ImageNet weights load into ``features`` only; torchvision's own ``classifier`` is dropped.
    """

    def __init__(
        self,
        widths: Sequence[int] = (128, 256, 512, 1024),
        depths: Sequence[int] = (3, 3, 27, 3),
        out_dim: int = 256,
        stochastic_depth: float = 0.5,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        total, seen = sum(depths), 0
        stem = nn.Conv2d(3, widths[0], kernel_size=4, stride=4, bias=True)
        layers: list[nn.Module] = [nn.Sequential(stem, LayerNorm2d(widths[0], eps=1e-6))]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for _ in range(depth):  # drop-path rate grows linearly with depth, as torchvision does
                blocks.append(CNBlock(width, layer_scale, stochastic_depth * seen / max(total - 1, 1)))
                seen += 1
            layers.append(nn.Sequential(*blocks))
            if i + 1 < len(widths):
                down = nn.Conv2d(width, widths[i + 1], kernel_size=2, stride=2)
                layers.append(nn.Sequential(LayerNorm2d(width, eps=1e-6), down))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            LayerNorm2d(widths[-1], eps=1e-6),
            nn.Flatten(1),
            nn.Linear(widths[-1], out_dim),
            nn.ReLU(inplace=True),
            nn.Linear(out_dim, out_dim),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)))


class StridedPointwiseConv(nn.Conv2d):
    """A 1x1, stride-s, unpadded convolution computed as subsampling followed by a unit-stride 1x1 conv.

    The two are the same function (a 1x1 kernel with stride s reads exactly the pixels ``x[..., ::s, ::s]``)
    with the same parameters and names, so torchvision weights still load. Computing it this way keeps
    oneDNN off its strided 1x1 weight-gradient path, which corrupts the heap (SIGSEGV / "corrupted
    double-linked list") for channels-last inputs of 2-7 channels when it runs the AVX2 kernels: oneDNN
    3.12 in torch 2.13, measured on AMD EPYC and with ``ONEDNN_MAX_CPU_ISA=AVX2``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        step_y, step_x = self.stride
        return F.conv2d(x[:, :, ::step_y, ::step_x], self.weight, self.bias)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with torchvision names conv1/bn1/conv2/bn2/downsample."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                StridedPointwiseConv(inplanes, planes, stride), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """ResNet trunk returning the globally pooled feature (B, widths[-1]).

    There is no ``fc``: a band head's output is GAP(layer4), projected later by APN's own Linear
    (reference §2.5). ImageNet ``resnet18`` weights load with their ``fc.*`` entries dropped.
    """

    def __init__(
        self, widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2)
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layer = [BasicBlock(inplanes, width, stride)]
            layer += [BasicBlock(width, width) for _ in range(count - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            inplanes = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def convnext_base(out_dim: int = 256, stochastic_depth: float = 0.5) -> ConvNeXt:
    """torchvision ``convnext_base`` shapes (widths 128…1024, depths 3,3,27,3) with the APN head."""
    return ConvNeXt((128, 256, 512, 1024), (3, 3, 27, 3), out_dim, stochastic_depth)


def resnet18() -> ResNet:
    """torchvision ``resnet18`` trunk shapes (widths 64…512, two blocks per stage), no ``fc``."""
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2))


__all__ = [
    "BasicBlock", "CNBlock", "ConvNeXt", "LayerNorm2d", "ResNet", "StridedPointwiseConv", "convnext_base",
    "resnet18",
]
