"""Training the band heads must not crash on any x86 CPU (oneDNN picks kernels by instruction set).

oneDNN 3.12 (torch 2.13) corrupts the heap in its AVX2 weight gradient of a strided 1x1 convolution
over channels-last inputs of 2-7 channels: the ResNet downsample of the ``tiny`` widths. It crashed the
test suite (SIGSEGV, "corrupted double-linked list") on AMD EPYC machines, whose oneDNN dispatch picks
the AVX2 kernels; ``ONEDNN_MAX_CPU_ISA=AVX2`` makes any AVX2 CPU take the same path. A crash kills the
interpreter, so the exact failing pattern runs in a subprocess, where it becomes a test failure.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from apncli.model.backbones import StridedPointwiseConv

# The pattern that crashed: a channels-last `tiny` APN (band heads = ResNet widths 4..16) trained with one
# torch thread, a few forward/backward steps; plus the bare tiny ResNet trunk and the single layer.
_TRAIN_STEPS = """
import torch
from apncli.model import build_model
from apncli.model.backbones import ResNet, StridedPointwiseConv

torch.set_num_threads(1)
torch.manual_seed(0)
model = build_model("tiny").train()
x = torch.rand(2, 3, 32, 32)
for _ in range(10):
    out = model(x)
    (out.logits.sum() + out.f_irr.sum()).backward()
trunk = ResNet((4, 8, 8, 16), (1, 1, 1, 1))
band_images = torch.rand(6, 3, 32, 32).contiguous(memory_format=torch.channels_last)
for _ in range(20):
    trunk(band_images).sum().backward()
for channels in range(1, 9):
    layer = StridedPointwiseConv(channels, 8, 2)
    z = torch.rand(6, channels, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
    for _ in range(20):
        layer(z).sum().backward()
print("ok")
"""


@pytest.mark.parametrize("isa", ["native", "AVX2"])
def test_tiny_band_heads_train_without_crashing(isa: str) -> None:
    env = dict(os.environ)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa  # oneDNN caps at what the CPU has, so this is safe anywhere
    done = subprocess.run([sys.executable, "-c", _TRAIN_STEPS], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (
        f"exit {done.returncode} (negative: killed by signal): {done.stderr[-2000:]}"
    )


@pytest.mark.parametrize("channels", [3, 4, 16])
def test_strided_pointwise_conv_is_the_strided_1x1_convolution(channels: int) -> None:
    """Same outputs and gradients as ``nn.Conv2d(k=1, stride=2)``, same parameter names (weights load)."""
    torch.manual_seed(0)
    ours = StridedPointwiseConv(channels, 8, 2)
    plain = nn.Conv2d(channels, 8, 1, stride=2, bias=False)
    plain.load_state_dict(ours.state_dict())
    x = torch.rand(2, channels, 15, 16, dtype=torch.float64)  # odd size: the last row is kept, as conv does
    ours, plain = ours.double(), plain.double()
    a, b = ours(x), plain(x)
    assert a.shape == b.shape == (2, 8, 8, 8)
    torch.testing.assert_close(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, plain.weight.grad)
