"""A 2-process DDP training run (CPU, gloo) equals a 1-process run on the same global batches.

Both runs use Lightning's DistributedSampler (DDP with 1 or 2 processes), so the 1-process batch k of
2B samples is exactly the union of the two processes' batches k of B samples. The backbone has no batch
norm (CPU DDP cannot synchronise it) and the head, ``directsum``, builds its NCA term on statistics of
the whole batch, gathered across processes. After a few optimiser steps the weights must agree.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from featspace.train.checkpoint_io import load_checkpoint


def _train(run_dir, devices: int, batch_size: int) -> None:
    command = [sys.executable, "-m", "featspace", "train", "digits-demo", "--head", "directsum",
               "--accelerator", "cpu", "--devices", str(devices), "--strategy", "ddp", "--run-dir", str(run_dir),
               "--set", "backbone_params.norm=none", "--set", "max_steps=4", "--set", f"batch_size={batch_size}",
               "--set", "val_fraction=0", "--set", "tsne=false", "--no-progress", "--no-plots"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_process_training_equals_one_process(tmp_path):
    _train(tmp_path / "two", devices=2, batch_size=16)
    _train(tmp_path / "one", devices=1, batch_size=32)
    two = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.ckpt")
    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.ckpt")
    assert two["global_step"] == one["global_step"] == 4
    assert two["state_dict"].keys() == one["state_dict"].keys()
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    # the optimiser really stepped on gradients (Adam's first moments are non-zero) in both runs
    for run in (one, two):
        moments = [s["exp_avg"] for s in run["optimizer_states"][0]["state"].values()]
        assert moments and all(m.abs().sum() > 0 for m in moments)
    # rank 0 alone wrote the run: one index row, finished
    from featspace.rundir import RunIndex

    record = RunIndex(tmp_path).get("two")
    assert record is not None and record.status == "finished"
