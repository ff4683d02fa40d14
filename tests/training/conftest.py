"""Training tests run torch on one thread: fast on a shared machine, and every run sums in the same order
(a resumed run can only match an uninterrupted one bit for bit if both use the same thread count)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
