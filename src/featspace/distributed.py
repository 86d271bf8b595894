"""Gathering a batch across processes with gradients, for losses built on batch statistics.

Under DDP every process computes the loss of its own shard. For a loss that is a mean of per-sample
terms this is harmless (DDP averages the gradients), but for losses built on statistics of the whole
batch (pairs, class means, covariances: POD's SC, NCA, Proto, AMC, batch-mean center updates) a
per-process loss is a different, weaker loss. ``gather_with_grad`` gives every process the global
batch, concatenated in rank order.

Why the gradients come out exact: the gather is autograd-aware (``_AllGatherWithGrad``); its backward
*sums* the gradients that all P processes computed for each shard. Every process
computes the same global loss L, so process p receives P·∂L/∂x_p for its own samples, and DDP's
averaging over P processes turns the backbone gradient into exactly ∂L/∂θ, the single-process
gradient on the concatenated batch. Head parameters see ∂L/∂W on every process, averaged to ∂L/∂W.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_with_grad", "gather_no_grad", "global_count", "is_distributed", "world_size", "launch_rank"]


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def global_count(n: int, device: torch.device) -> int:
    """The number of samples summed over all processes (``n`` on one process)."""
    if not is_distributed():
        return n
    total = torch.tensor([n], device=device, dtype=torch.long)
    dist.all_reduce(total)
    return int(total)


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _pad_rows(t: Tensor, rows: int) -> Tensor:
    if t.shape[0] == rows:
        return t
    pad = t.new_zeros((rows - t.shape[0], *t.shape[1:]))
    return torch.cat([t, pad], dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for each shard and keeps this process's.

    Backward is an all_reduce (SUM) of the full gradient followed by a slice, rather than a
    reduce_scatter, because gloo (CPU) has no reduce_scatter.
    """

    @staticmethod
    def forward(ctx, padded: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rank, ctx.rows = dist.get_rank(), padded.shape[0]
        out = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
        dist.all_gather(out, padded.contiguous())
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank]


def gather_with_grad(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The global batch ([ΣB_p, d], [ΣB_p]) in rank order; gradients flow back to each process's own rows.

    Shards of unequal size (a last batch) are padded for the collective and cut back afterwards.
    On a single process the inputs are returned unchanged.
    """
    if not is_distributed():
        return embeddings, labels
    sizes = _gather_sizes(embeddings.shape[0], embeddings.device)
    longest = max(sizes)
    gathered_x = _AllGatherWithGrad.apply(_pad_rows(embeddings, longest))
    gathered_y = [torch.zeros_like(_pad_rows(labels, longest)) for _ in sizes]
    dist.all_gather(gathered_y, _pad_rows(labels, longest).contiguous())
    xs = [g[:n] for g, n in zip(gathered_x, sizes)]
    ys = [g[:n] for g, n in zip(gathered_y, sizes)]
    return torch.cat(xs, dim=0), torch.cat(ys, dim=0)


def gather_no_grad(tensor: Tensor) -> Tensor:
    """Concatenate a tensor's rows from every process (no gradient), e.g. embeddings for evaluation."""
    if not is_distributed():
        return tensor
    sizes = _gather_sizes(tensor.shape[0], tensor.device)
    longest = max(sizes)
    padded = _pad_rows(tensor, longest).contiguous()
    out = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(out, padded)
    return torch.cat([g[:n] for g, n in zip(out, sizes)], dim=0)


def launch_rank() -> int:
    """This process's global rank as the launcher set it before any process group exists: 0 for the
    process a user started; > 0 for the processes Lightning's DDP launcher starts (LOCAL_RANK), torchrun
    (RANK), other nodes (NODE_RANK) and SLURM tasks (SLURM_PROCID)."""
    for key in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        value = os.environ.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0
