"""Batch-global pieces of DDP training, and a real 2-process torchrun run against a single process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthdata import TINY_TRAIN_FLAGS, make_folder_dataset
from torch import nn

from apncli.model import build_model
from apncli.training.distributed import (
    DistContext,
    GlobalBatchNorm,
    convert_batchnorm,
    gather_with_grad,
    init_distributed,
)
from apncli.training.state import load_state


def test_global_batchnorm_is_plain_batchnorm_in_one_process() -> None:
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3)
    ref.weight.data.uniform_()
    model = convert_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), ref), torch.device("cpu"))
    assert isinstance(model[1], GlobalBatchNorm)
    plain = nn.BatchNorm2d(3)
    plain.load_state_dict(model[1].state_dict())
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    assert torch.allclose(model[1](x), plain(x), atol=1e-6)
    assert torch.allclose(model[1].running_var, plain.running_var)


def test_single_process_context() -> None:
    ctx, device = init_distributed("cpu")
    assert ctx == DistContext() and not ctx.enabled and ctx.is_main and device.type == "cpu"
    x = torch.ones(2, 3)
    assert gather_with_grad(x) is x


def test_convert_batchnorm_keeps_state_dict_keys() -> None:
    model = build_model("tiny")
    keys = list(model.state_dict())
    converted = convert_batchnorm(model, torch.device("cpu"))
    assert list(converted.state_dict()) == keys
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_torchrun_matches_single_process(tmp_path: Path) -> None:
    """Same global batch (4) as 1×4 and 2×2: final weights agree up to float summation order.

    BatchNorm is synchronised (GlobalBatchNorm on CPU) and the CLUB bound sees the gathered batch, so the
    objective is the same function of the same samples. The key part of the attention's in_proj_bias is
    excluded: its true gradient is exactly zero (softmax ignores a per-query constant), so Adam turns
    rounding noise into ±lr steps there in both runs.
    """
    root = make_folder_dataset(tmp_path / "data", n=12)
    args = [
        "train",
        "--dataset",
        "folder",
        "--data-root",
        str(root),
        *TINY_TRAIN_FLAGS,
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--club-lr",
        "1e-3",
        "--val-fraction",
        "0.34",
        "--compress-prob",
        "0.5",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    subprocess.run(
        [sys.executable, "-m", "apncli", *args, "--out", str(tmp_path / "one")],
        env=env,
        check=True,
        timeout=300,
    )
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "apncli",
    ]
    subprocess.run([*torchrun, *args, "--out", str(tmp_path / "two")], env=env, check=True, timeout=300)
    one = load_state(tmp_path / "one" / "state-last.apn-state")
    two = load_state(tmp_path / "two" / "state-last.apn-state")
    assert one["progress"] == two["progress"]
    torch.manual_seed(0)
    init = build_model("tiny").state_dict()
    dim = init["attention.in_proj_bias"].numel() // 3
    diff = update = 0.0
    for key, a in one["model"].items():
        if not a.is_floating_point() or "running_" in key:
            continue
        b, a0 = two["model"][key].double(), init[key].double()
        a = a.double()
        if key == "attention.in_proj_bias":
            a, b, a0 = (torch.cat([t[:dim], t[2 * dim :]]) for t in (a, b, a0))
        diff += float(((a - b) ** 2).sum())
        update += float(((a - a0) ** 2).sum())
    assert update > 0
    assert (diff / update) ** 0.5 < 0.01
    for key, a in one["model"].items():
        if "running_mean" in key:
            assert torch.allclose(a, two["model"][key], rtol=1e-4, atol=1e-4), key
    for key, a in one["club"].items():
        assert torch.allclose(a, two["club"][key], atol=1e-5), key
    assert (tmp_path / "two" / "model.safetensors").exists()
    assert not (tmp_path / "two" / "state-last.apn-state.tmp").exists()
