"""Multi-process training helpers: torchrun environment, process group, and batch-global statistics.

Launch with ``torchrun --nproc_per_node=N -m apncli train ...`` (or ``--nnodes``/``--rdzv-*`` for several
machines). Each process drives one device (NCCL on CUDA, Gloo on CPU); ``--batch-size`` is the *global*
batch, split evenly over the processes.

Why the batch-global pieces: DDP averages gradients, which equals single-process training on the global
batch only for losses that are per-sample means. Two APN parts are not: BatchNorm (statistics over the
batch) and the CLUB bound (a cross term over all pairs in the batch). BatchNorm layers are therefore
synchronised (``nn.SyncBatchNorm`` on CUDA; :class:`GlobalBatchNorm` on CPU, where SyncBatchNorm is not
supported), and the CLUB bound is taken over features gathered from every process
(:func:`gather_with_grad`). With both, an N-process run follows the single-process run of the same global
batch up to floating-point summation order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from apncli.engine.device import select_device
from apncli.errors import UsageError

__all__ = [
    "DistContext",
    "GlobalBatchNorm",
    "all_reduce_grads",
    "convert_batchnorm",
    "gather_with_grad",
    "init_distributed",
    "shutdown",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device_request: str | None) -> tuple[DistContext, torch.device]:
    """Read torchrun's environment, join the process group, and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), select_device(device_request)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    wanted = (device_request or os.environ.get("APN_DEVICE") or "auto").strip().lower()
    use_cuda = wanted.startswith("cuda") or (wanted == "auto" and torch.cuda.is_available())
    if use_cuda:
        if torch.cuda.device_count() <= local_rank:
            raise UsageError(
                f"process {rank} wants cuda:{local_rank} but only {torch.cuda.device_count()} "
                "GPU(s) are visible"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif wanted in ("cpu", "auto"):
        device, backend = torch.device("cpu"), "gloo"
    else:
        raise UsageError(f"--device {wanted} is not supported with torchrun; use cuda or cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, backend), device


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Σ over processes, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        g = grad.clone()
        dist.all_reduce(g)
        return g


class _GatherWithGrad(torch.autograd.Function):
    """Concatenate equal-sized batches from every process; the backward returns each its own slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        g = grad.contiguous().clone()
        dist.all_reduce(g)  # every process computed a loss on the gathered batch
        return g[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """All processes' rows of ``x`` (same on each process), keeping the gradient path to local rows.

    Each process then computes the same batch-global loss; DDP's gradient averaging divides by N the
    N-fold sum the backward produces, giving exactly the single-process gradient.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_grads(params: list[nn.Parameter]) -> None:
    """Average gradients over processes for a module that is not wrapped in DDP (the CLUB estimator)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the batch of every process (CPU/Gloo-capable).

    Two-pass (mean, then centred second moment) for the same accuracy as single-process BatchNorm. Outside
    a process group, or in eval mode, it is plain BatchNorm; its state_dict keys are BatchNorm's.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, channels] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([float(x.numel() // channels)], device=x.device)
        sums = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = sums[-1].detach()
        mean = sums[:channels] / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm batch-global: SyncBatchNorm on CUDA, :class:`GlobalBatchNorm` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        ).to(device)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, device))
    return module
