"""The few torch.distributed operations SAE training needs. Without a process group they are no-ops.

Data-parallel training (`torchrun --nproc-per-node N`) runs one process per rank; each takes its
contiguous shard of every global batch. Gradients are averaged with an all-reduce, and every
statistic that drives the loss (dead latents, the BatchTopK selection and threshold, metrics)
is reduced over ranks, so N ranks compute the same update as one process on the global batch.
"""

import os
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor


class RankInfo(NamedTuple):
    """This process's place in the data-parallel group."""

    rank: int
    world_size: int


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_info() -> RankInfo:
    """(rank, world_size), (0, 1) outside a process group."""
    if not is_distributed():
        return RankInfo(0, 1)
    return RankInfo(dist.get_rank(), dist.get_world_size())


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group when torchrun set WORLD_SIZE > 1; True if this call did it.

    Uses NCCL for CUDA devices and gloo otherwise. An existing group is left alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def all_reduce_(tensor: Tensor, op: str = "sum") -> Tensor:
    """In-place all-reduce ('sum', 'max' or 'min'); returns the tensor. CPU tensors go through
    the GPU under NCCL, which reduces only CUDA tensors."""
    if is_distributed():
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        if dist.get_backend() == "nccl" and not tensor.is_cuda:
            staged = tensor.cuda()
            dist.all_reduce(staged, op=ops[op])
            tensor.copy_(staged)
        else:
            dist.all_reduce(tensor, op=ops[op])
    return tensor


def average_gradients_(params: list[torch.nn.Parameter]) -> None:
    """grad <- mean over ranks of grad, one flattened all-reduce for all parameters."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module_(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def global_kth_largest(values: Tensor, k: int) -> Tensor:
    """The k-th largest entry of the concatenation of `values` over all ranks (a 0-d tensor).

    Each rank contributes its own top min(k, numel) entries, which are all the candidates.
    """
    local = values.reshape(-1).topk(min(k, values.numel())).values
    if is_distributed():
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local.contiguous())
        local = torch.cat(gathered)
    return local.topk(k).values[-1]


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()
