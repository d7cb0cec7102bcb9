"""torch.distributed for `train` and `validate`: one process, or one per device under torchrun.

The process group is gloo on CPU and NCCL on CUDA. BatchNorm statistics are synchronised over
ranks, so K processes with batch b compute what one process with batch K*b computes: on CUDA
with torch's SyncBatchNorm; on CPU, which SyncBatchNorm refuses ("expected input tensor to be on
GPU"), with GlobalBatchNorm2d below."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among world processes and its device."""
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str) -> Context:
    """Joins torchrun's process group when launched by torchrun (WORLD_SIZE set), else a
    single process. device: "cpu" or "cuda"; on CUDA each rank takes GPU LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context(0, 1, torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Context(dist.get_rank(), world,
                   torch.device(device, local_rank) if device == "cuda" else torch.device("cpu"))


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(ctx: Context, values: list[float]) -> list[float]:
    """values summed over ranks (float64), the same list on every rank."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64,
                     device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def first_problem(ctx: Context, problem: str | None) -> str | None:
    """The lowest rank's problem (a message) when any rank has one, the same on every rank, so
    all ranks stop together."""
    if not ctx.distributed:
        return problem
    problems: list[str | None] = [None] * ctx.world
    dist.all_gather_object(problems, problem)
    return next((p for p in problems if p is not None), None)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum over ranks
    of the output's gradients (torch.distributed.nn's all_reduce does this too, deprecated)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def differentiable_all_reduce(x: Tensor) -> Tensor:
    return _AllReduceSum.apply(x)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are taken over the whole batch of all ranks (two
    differentiable all-reduces: the mean, then the centred squares), for devices where torch's
    SyncBatchNorm does not run. Same parameters and buffers as BatchNorm2d; in eval mode, or
    without a process group, it is BatchNorm2d.

    Input (B, C, H, W) float; the statistics are computed in float32."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], dtype=torch.float32, device=x.device)
        dist.all_reduce(count)
        mean = differentiable_all_reduce(xf.sum(dim=(0, 2, 3))) / count
        centred = xf - mean.view(1, -1, 1, 1)
        var = differentiable_all_reduce(centred.square().sum(dim=(0, 2, 3))) / count
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * count / (count - 1), self.momentum)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """model with every BatchNorm2d synchronised over ranks (see the module's docstring)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum,
                                       child.affine, child.track_running_stats,
                                       device=child.weight.device)
            synced.load_state_dict(child.state_dict())
            setattr(model, name, synced)
        else:
            sync_batchnorm(child, device)
    return model


def wrap(model: nn.Module, ctx: Context, fsdp: bool) -> nn.Module:
    """The model to train: as it is on one process; under torchrun with synchronised
    BatchNorm, then DistributedDataParallel, or with fsdp FSDP2's fully_shard on each block and
    on the whole model (the model is changed in place and returned)."""
    if not ctx.distributed and not fsdp:
        return model
    model = sync_batchnorm(model, ctx.device) if ctx.distributed else model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        if not dist.is_initialized():
            raise RuntimeError("--fsdp needs torch.distributed: launch with torchrun")
        for level in model.levels:
            for block in level.blocks:
                fully_shard(block)
        fully_shard(model)
        return model
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
