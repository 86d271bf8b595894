"""The training path end to end on the bundled digits: run directory, index, metrics, eval, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml

from featspace.rundir import RunIndex
from featspace.train import evaluate_run, load_recipe, train
from featspace.train.checkpoint_io import load_checkpoint
from featspace.train.fit import PAUSE_ENV
from tests._kill import start_and_wait_for_pause

FAST = ["max_epochs=2", "tsne=false", "embedding_dim=8", "batch_size=128"]


@pytest.mark.slow
def test_train_writes_a_complete_run(tmp_path):
    config = load_recipe("digits-demo", ["head=icv", *FAST])
    result = train(config, root=tmp_path, progress=False)
    run = result.path
    for name in ("config.yaml", "metrics.json", "history.csv", "embeddings.npz", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["head"] == "icv" and saved["max_epochs"] == 2 and saved["recipe"] == "digits-demo"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "ncc_accuracy", "ncc_learned_accuracy", "silhouette", "d_em", "d_kl",
                "discriminant_total", "epochs", "train_seconds"):
        assert key in metrics, key
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["epochs"] == 2
    arrays = np.load(run / "embeddings.npz")
    assert arrays["test_embeddings"].shape[1] == 8 and arrays["learned_centroids"].shape == (10, 8)
    assert arrays["test_scores"].shape == (arrays["test_labels"].shape[0], 10)
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,step,train_loss,train_acc,val_loss,val_acc") and len(history) == 3
    record = RunIndex(tmp_path).get(result.run_id)
    assert record.status == "finished" and record.metrics["accuracy"] == metrics["accuracy"]
    assert record.head == "icv" and record.dataset == "digits" and record.code_version

    again = evaluate_run(run)  # featspace eval: the same numbers from the checkpoint
    for key in ("accuracy", "ncc_accuracy", "silhouette", "d_em"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-6, abs=1e-9), key


@pytest.mark.slow
def test_a_failing_run_is_marked_failed(tmp_path):
    config = load_recipe("digits-demo", [*FAST, "head=softmax", "backbone_params.no_such_option=1"])
    with pytest.raises(ValueError, match="no_such_option"):
        train(config, root=tmp_path, progress=False)
    (record,) = RunIndex(tmp_path).query()
    assert record.status == "failed" and "no_such_option" in record.error


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "featspace", *args]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    """SIGKILL a run paused after its second epoch's checkpoint; --resume must finish with the metrics of an
    uninterrupted run of the same seed."""
    overrides = ["--set", "max_epochs=4", "--set", "tsne=false", "--set", "embedding_dim=16", "--set",
                 "batch_size=128", "--head", "pod", "--no-progress", "--no-plots"]
    killed = tmp_path / "killed"
    proc, _ = start_and_wait_for_pause(_cli("train", "digits-demo", "--run-dir", str(killed), *overrides),
                                       stdout=subprocess.DEVNULL, start_new_session=True,
                                       env={**os.environ, PAUSE_ENV: "2"})
    assert len((killed / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    assert RunIndex(tmp_path).get("killed").status == "interrupted"
    moved = tmp_path / "elsewhere" / "killed"  # a run directory is relocatable (issue 17, item 1)
    moved.parent.mkdir()
    killed.rename(moved)
    killed = moved

    done = subprocess.run(_cli("train", "--resume", str(killed), "--no-progress", "--no-plots"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    straight = tmp_path / "straight"
    done = subprocess.run(_cli("train", "digits-demo", "--run-dir", str(straight), *overrides),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed_metrics = json.loads((killed / "metrics.json").read_text())
    straight_metrics = json.loads((straight / "metrics.json").read_text())
    assert resumed_metrics["epochs"] == straight_metrics["epochs"] == 4
    for key in ("accuracy", "ncc_accuracy", "silhouette", "d_em", "d_kl", "discriminant_total"):
        assert resumed_metrics[key] == pytest.approx(straight_metrics[key], rel=1e-5, abs=1e-7), key
    assert RunIndex(killed.parent).get("killed").status == "finished"
    assert len((killed / "history.csv").read_text().splitlines()) == 5
    best_resumed = load_checkpoint(killed / "checkpoints" / "best.ckpt")
    best_straight = load_checkpoint(straight / "checkpoints" / "best.ckpt")
    assert best_resumed["epoch"] == best_straight["epoch"]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_train_with_its_exit_code_one_line_and_an_interrupted_run(tmp_path, signum, code):
    """Issue 17, item 5: Lightning ended a SIGTERM'd fit with status 0 and nothing printed (a scheduler read
    success) and a Ctrl-C with status 1; now 128 + the signal, one line, and the run resumable."""
    run = tmp_path / "run"
    proc, _ = start_and_wait_for_pause(_cli("train", "digits-demo", "--epochs", "3", "--run-dir", str(run),
                                            "--no-progress", "--no-plots"),
                                       stdout=subprocess.DEVNULL, env={**os.environ, PAUSE_ENV: "1"})
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == code
    rest = proc.stderr.read().strip().splitlines()
    assert rest == [f"featspace train: interrupted by {signal.Signals(signum).name}; the run stays resumable"]
    assert RunIndex(tmp_path).get("run").status == "interrupted"
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
