"""Batch-statistic heads under DDP: 2 CPU processes (gloo) against one process on the whole batch.

Each process builds the same head, takes its shard of a global batch, runs forward/backward, and
(as DDP does) averages parameter gradients over processes. The claim proven here, for every head with
``uses_batch_statistics``: the mean of the processes' losses equals the one-process loss on the
concatenated batch, each process's embedding gradient divided by P (DDP's later averaging of backbone
gradients divides by P) equals the one-process gradient of its rows, the averaged parameter gradients
equal the one-process ones, and state updated outside the gradient (center loss; POD's epoch mean norm
after ``start_epoch``) is identical on every process and equal to the one-process state. Shards of unequal size (a last batch) included.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from featspace import heads

D, C = 6, 4
BATCH_HEADS = [n for n in heads.names() if heads.get_head_class(n).uses_batch_statistics]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _global_batch(n: int):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 0, 1, 3, 2, 0, 1][:n]) % C
    return x, y


def _single_process(name: str, n: int, shards: list[int]):
    torch.manual_seed(0)
    head = heads.build(name, D, C).double().train()
    x, y = _global_batch(n)
    x = x.clone().requires_grad_()
    out = head(x, y)
    out.loss.backward()
    head.start_epoch(2)  # epoch-level statistics (POD's mean norm) are reduced across processes here
    grads = {k: p.grad.clone() for k, p in head.named_parameters() if p.grad is not None}
    buffers = {k: b.clone() for k, b in head.named_buffers()}
    return out.loss.detach(), x.grad.clone(), grads, buffers


def _worker(rank: int, world: int, port: int, name: str, n: int, shards: list[int], path: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        head = heads.build(name, D, C).double().train()
        x, y = _global_batch(n)
        start = sum(shards[:rank])
        xs = x[start:start + shards[rank]].clone().requires_grad_()
        out = head(xs, y[start:start + shards[rank]])
        out.loss.backward()
        head.start_epoch(2)
        loss = out.loss.detach().clone()
        dist.all_reduce(loss)
        grads = {}
        for key, p in head.named_parameters():
            if p.grad is not None:
                g = p.grad.clone()
                dist.all_reduce(g)
                grads[key] = g / world
        padded = max(shards)
        mine = torch.zeros(padded, D, dtype=torch.float64)
        mine[: shards[rank]] = xs.grad / world
        gathered = [torch.zeros(padded, D, dtype=torch.float64) for _ in shards]
        dist.all_gather(gathered, mine)
        x_grads = torch.cat([g[:s] for g, s in zip(gathered, shards)])
        buffers = {k: b.clone() for k, b in head.named_buffers()}
        torch.save({"loss": loss / world, "x_grad": x_grads, "grads": grads, "buffers": buffers},
                   f"{path}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("shards", [[6, 6], [7, 5]], ids=["even", "uneven"])
@pytest.mark.parametrize("name", BATCH_HEADS)
def test_two_processes_equal_one_process(name, shards, tmp_path):
    n = sum(shards)
    path = str(tmp_path / "result")
    mp.start_processes(_worker, args=(2, _free_port(), name, n, shards, path), nprocs=2, join=True,
                       start_method="spawn")
    loss, x_grad, grads, buffers = _single_process(name, n, shards)
    results = [torch.load(f"{path}.{r}", weights_only=True) for r in range(2)]
    for result in results:
        torch.testing.assert_close(result["loss"], loss, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(result["x_grad"], x_grad, rtol=1e-9, atol=1e-10)
        assert result["grads"].keys() == grads.keys()
        for key in grads:
            torch.testing.assert_close(result["grads"][key], grads[key], rtol=1e-9, atol=1e-10, msg=key)
        for key in buffers:
            torch.testing.assert_close(result["buffers"][key], buffers[key], rtol=1e-9, atol=1e-10, msg=key)


def test_there_are_batch_statistic_heads():
    assert {"nca", "proto", "directsum", "amc", "pod", "center"} <= set(BATCH_HEADS)
