"""Device selection: CUDA → MPS → CPU, explicit requests honoured exactly or refused clearly."""

from __future__ import annotations

import pytest
import torch

from apncli.engine.device import autocast_dtype, select_device
from apncli.errors import UsageError


@pytest.fixture
def machine(monkeypatch):
    """Pretend hardware: call with the number of CUDA devices and whether MPS exists."""
    monkeypatch.delenv("APN_DEVICE", raising=False)

    def fake(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return fake


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(1, True, "cuda"), (2, False, "cuda"), (0, True, "mps"), (0, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert select_device().type == expected
    assert select_device("auto").type == expected
    assert select_device(" AUTO ").type == expected


def test_env_var_overrides_auto_but_not_an_explicit_flag(machine, monkeypatch):
    machine(cuda=1, mps=True)
    monkeypatch.setenv("APN_DEVICE", "cpu")
    assert select_device() == torch.device("cpu")
    assert select_device("mps") == torch.device("mps")
    monkeypatch.setenv("APN_DEVICE", "auto")
    assert select_device().type == "cuda"


def test_explicit_devices_are_returned_exactly(machine):
    machine(cuda=2, mps=True)
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("cuda") == torch.device("cuda")
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device("mps") == torch.device("mps")


def test_cuda_requested_without_cuda_is_a_usage_error(machine):
    machine(cuda=0, mps=True)
    with pytest.raises(UsageError, match=r"'cuda' was requested \(--device\) but CUDA is not available"):
        select_device("cuda")


def test_env_var_names_itself_in_the_error(machine, monkeypatch):
    machine(cuda=0)
    monkeypatch.setenv("APN_DEVICE", "cuda:0")
    with pytest.raises(UsageError, match="APN_DEVICE"):
        select_device()


def test_cuda_index_beyond_device_count(machine):
    machine(cuda=2)
    with pytest.raises(UsageError, match=r"has 2 CUDA device\(s\)"):
        select_device("cuda:2")


def test_mps_requested_without_mps(machine):
    machine(cuda=1, mps=False)
    with pytest.raises(UsageError, match="MPS is not available"):
        select_device("mps")


@pytest.mark.parametrize("spec", ["tpu9", "gpu", "cuda:x", "cuda:-1"])
def test_garbage_device_names(machine, spec):
    machine(cuda=1)
    with pytest.raises(UsageError, match="unknown device"):
        select_device(spec)


@pytest.mark.parametrize("spec", ["meta", "xpu"])
def test_real_but_unsupported_device_types(machine, spec):
    machine(cuda=1)
    with pytest.raises(UsageError, match="unsupported device"):
        select_device(spec)


def test_mixed_precision_is_never_bfloat16(monkeypatch):
    """bfloat16 rounds away the least-significant-bit traces: float16 even where bf16 is supported."""
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("mps")) is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(torch.device("cuda")) is torch.float16
    assert autocast_dtype(torch.device("cuda", 0)) is torch.float16
