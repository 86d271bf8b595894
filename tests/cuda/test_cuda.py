"""The CUDA paths: every head on the GPU in float32 and under bf16 autocast, a bf16-mixed training run with pinned,
non-blocking batches, and a one-process nccl DDP run. Marked ``cuda``; skipped cleanly where there is no GPU (CI
never has one), run by ``benchmarks/device_check.sh`` on a machine that has."""

from __future__ import annotations

import json

import pytest
import torch

from featspace import heads

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

B, D, C = 64, 32, 10


def _inputs(device: str):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=generator, dtype=torch.float64)
    y = torch.arange(B) % C
    return x.to(device), y.to(device)


@pytest.mark.parametrize("name", heads.names())
def test_every_head_gives_the_cpu_loss_and_gradients_on_cuda_in_float32(name):
    """Same weights, same inputs: the CUDA float32 loss and input gradient match the CPU's to float tolerance."""
    torch.manual_seed(0)
    cpu_head = heads.build(name, D, C)
    cuda_head = heads.build(name, D, C)
    cuda_head.load_state_dict(cpu_head.state_dict())
    cuda_head.cuda()
    results = []
    for head, device in ((cpu_head, "cpu"), (cuda_head, "cuda")):
        x, y = _inputs(device)
        x = x.float().requires_grad_()
        out = head(x, y)
        out.loss.backward()
        results.append((out.loss.detach().cpu(), x.grad.cpu(), out.logits.detach().cpu()))
    (cpu_loss, cpu_grad, cpu_logits), (gpu_loss, gpu_grad, gpu_logits) = results
    torch.testing.assert_close(gpu_loss, cpu_loss, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu_grad, cpu_grad, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(gpu_logits, cpu_logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", heads.names())
def test_every_head_trains_under_bf16_autocast(name):
    """Under bf16 autocast a head's loss is finite, within bf16 round-off of float32, and its gradients finite
    (the heads compute their sensitive parts in float32: featspace.heads.base.as_head_dtype)."""
    torch.manual_seed(0)
    head = heads.build(name, D, C).cuda()
    x, y = _inputs("cuda")
    x = x.float().requires_grad_()
    reference = head(x, y).loss.detach()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = head(x, y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out.loss.float(), reference, rtol=5e-2, atol=5e-2)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in head.parameters())


def _train(tmp_path, *extra: str) -> dict:
    from featspace.cli import main

    runs = tmp_path / "runs"
    code = main(["train", "digits-demo", "--no-progress", "--no-plots", "--root", str(runs), "--set", "max_epochs=1",
                 "tsne=false", "accelerator=gpu", *extra])
    assert code == 0
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return json.loads((run / "metrics.json").read_text())


def test_a_bf16_mixed_run_trains_on_the_gpu_with_pinned_batches(tmp_path):
    metrics = _train(tmp_path, "precision=bf16-mixed")
    assert metrics["accuracy"] > 0.3  # one epoch on 8×8 digits; chance is 0.1


def test_a_one_process_nccl_ddp_run_trains(tmp_path):
    metrics = _train(tmp_path, "strategy=ddp", "devices=1")
    assert metrics["accuracy"] > 0.3
