"""Training state round-trips through safetensors + JSON with no pickle."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from apncli.errors import CheckpointError
from apncli.training.state import load_state, save_state


def test_round_trip_of_optimiser_scheduler_and_rng_state(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    sched = torch.optim.lr_scheduler.ChainedScheduler(
        [
            torch.optim.lr_scheduler.LinearLR(opt, 1 / 3, total_iters=2),
            torch.optim.lr_scheduler.StepLR(opt, 5),
        ]
    )
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    state = {
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "numpy": np.random.get_state()[1],
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "misc": {"epoch": 3, "best": None, "ratio": 0.5, "tags": ["a", "b"]},
    }
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert back["opt"]["param_groups"][0]["betas"] == (0.8, 0.9)
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert back["python"] == random.getstate()
    assert back["numpy"].dtype == np.uint32 and np.array_equal(back["numpy"], state["numpy"])
    assert torch.equal(back["torch"], state["torch"]) and back["misc"] == state["misc"]
    opt2 = torch.optim.Adam(model.parameters(), lr=0.1)
    opt2.load_state_dict(back["opt"])
    sched2 = torch.optim.lr_scheduler.ChainedScheduler(
        [
            torch.optim.lr_scheduler.LinearLR(opt2, 1 / 3, total_iters=2),
            torch.optim.lr_scheduler.StepLR(opt2, 5),
        ]
    )
    sched2.load_state_dict(back["sched"])
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert not list(tmp_path.glob("*.tmp"))


def test_refuses_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable training state"):
        load_state(bad)
    with pytest.raises(TypeError):
        save_state(tmp_path / "y.safetensors", {"f": object()})
