"""A run on a streamed image folder end to end (issue 13): train/val/test folders of PNG and JPEG files of mixed
sizes and aspect ratios with a corrupt file, the small CNN at image_size 32; ``featspace eval`` and ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from featspace.cli import main
from featspace.rundir import RunDir, RunIndex
from featspace.train import load_recipe, load_run, train
from featspace.train.fit import PAUSE_ENV
from tests._kill import start_and_wait_for_pause
from tests.data import formats


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    formats.write_mixed_folder(root, {"train": {"ant": 8, "bee": 8, "cat": 8}, "val": {"ant": 2, "bee": 2, "cat": 2},
                                      "test": {"ant": 3, "bee": 3, "cat": 3}})
    (root / "train" / "bee" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return root


def overrides(folder) -> list[str]:
    return ["--dataset", "imagefolder", "--data-dir", str(folder), "--epochs", "2", "--batch-size", "8",
            "--set", "image_size=32", "--set", "tsne=false", "--set", "embedding_dim=8"]


def test_a_corrupt_file_stops_the_run_with_one_line_naming_it(folder, tmp_path, capsys):
    code = main(["train", "digits-demo", *overrides(folder), "--root", str(tmp_path), "--no-progress", "--no-plots"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"featspace train: error: {folder / 'train' / 'bee' / 'corrupt.jpg'}: ")
    assert "skip_corrupt" in err


@pytest.mark.slow
def test_train_eval_and_resume_on_a_streamed_folder(folder, tmp_path, capsys):
    args = [*overrides(folder), "--set", "skip_corrupt=true"]
    config = load_recipe("digits-demo", {"dataset": "imagefolder", "data_dir": str(folder), "max_epochs": 2,
                                         "batch_size": 8, "image_size": 32, "tsne": False, "embedding_dim": 8,
                                         "skip_corrupt": True})
    run = train(config, run_dir=tmp_path / "straight", progress=False).path
    rundir = RunDir(run)
    corrupt = str(folder / "train" / "bee" / "corrupt.jpg")
    assert [p for p, _ in rundir.read_skipped_files()] == [corrupt]
    metrics = rundir.read_metrics()
    assert metrics["epochs"] == 2 and not np.isnan(metrics["best_val_loss"])  # val/ was the validation split
    arrays = rundir.read_embeddings()
    assert arrays["test_embeddings"].shape == (9, 8) and arrays["train_embeddings"].shape == (24, 8)
    assert list(arrays["test_paths"]) == sorted(str(p) for p in (folder / "test").rglob("*.*"))
    assert len(arrays["train_paths"]) == 24 and corrupt not in arrays["train_paths"]
    info = rundir.read_model()
    assert info["image_size"] == [32, 32] and info["resize"] == "shorter_side" and len(info["mean"]) == 3

    # featspace eval: the same numbers, with the saved statistics
    assert main(["eval", str(run), "--no-plots"]) == 0
    again = rundir.read_metrics()
    for key in ("accuracy", "ncc_accuracy", "silhouette"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-6, abs=1e-9), key

    # predictions from files see the test images as evaluation did
    model = load_run(run)
    scores = model.predict(torch.stack([model.read(p) for p in arrays["test_paths"]]))
    np.testing.assert_allclose(scores.numpy(), arrays["test_scores"], rtol=1e-4, atol=1e-5)

    # killed after its first epoch, resumed: the metrics of the uninterrupted run
    killed = tmp_path / "killed"
    proc, _ = start_and_wait_for_pause([sys.executable, "-m", "featspace", "train", "digits-demo", "--run-dir",
                                        str(killed), *args, "--no-progress", "--no-plots"],
                                       stdout=subprocess.DEVNULL, start_new_session=True,
                                       env={**os.environ, PAUSE_ENV: "1"})
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert RunIndex(tmp_path).get("killed").status == "interrupted"
    assert main(["train", "--resume", str(killed), "--no-progress", "--no-plots"]) == 0
    resumed = json.loads((killed / "metrics.json").read_text())
    for key in ("accuracy", "ncc_accuracy", "best_val_loss", "final_train_acc"):
        assert resumed[key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-7), key
