"""`featspace train --resume RUN --epochs N`: a finished run trained on to N epochs equals an N-epoch run."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from featspace.cli import main
from featspace.config import TrainConfig, load_recipe
from featspace.rundir import RunDir, RunIndex
from featspace.train import fit, train
from featspace.train.checkpoint_io import load_checkpoint
from featspace.train.history import read_history

# a multi-step drop after epoch 1: the extended epoch must run at the decayed rate, as the straight run's does
FAST = {"tsne": False, "embedding_dim": 8, "batch_size": 128, "schedule": "multistep", "milestones": [1],
        "gamma": 0.5, "loggers": ["csv"]}


@pytest.mark.slow
def test_a_one_epoch_run_extended_to_two_equals_a_two_epoch_run(tmp_path, capsys):
    short = train(load_recipe("digits-demo", {**FAST, "max_epochs": 1}), run_dir=tmp_path / "short", progress=False)
    assert short.metrics["epochs"] == 1
    assert main(["train", "--resume", str(short.path), "--epochs", "2", "--no-progress", "--no-plots"]) == 0
    straight = train(load_recipe("digits-demo", {**FAST, "max_epochs": 2}), run_dir=tmp_path / "straight",
                     progress=False)
    extended = RunDir(short.path)
    assert extended.read_config().max_epochs == 2
    record = RunIndex(tmp_path).get("short")
    assert record.status == "finished" and record.config["max_epochs"] == 2
    weights = load_checkpoint(extended.last_checkpoint)["state_dict"]
    expected = load_checkpoint(RunDir(straight.path).last_checkpoint)["state_dict"]
    assert weights.keys() == expected.keys()
    for key in weights:
        torch.testing.assert_close(weights[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)
    metrics = extended.read_metrics()
    assert metrics["epochs"] == straight.metrics["epochs"] == 2 and record.metrics["epochs"] == 2
    for key in ("accuracy", "ncc_accuracy", "silhouette", "d_em", "final_train_acc", "best_val_loss"):
        assert metrics[key] == pytest.approx(straight.metrics[key], rel=1e-5, abs=1e-7), key
    history, expected_history = read_history(extended.path / "history.csv"), read_history(straight.path / "history.csv")
    for row in (*history, *expected_history):
        assert row.pop("epoch_seconds") > 0  # wall time, the one column two runs never share
    assert history == expected_history


def _fake_fit(seen):
    def fake(config, rundir, checkpoint, *, progress):
        seen.append(config)
        rundir.write_metrics({"accuracy": 0.5, "epochs": float(config.max_epochs or config.max_steps)})
        return {"accuracy": 0.5}
    return mock.patch.object(fit, "fit_and_evaluate", fake)


def _finished(tmp_path, **fields):
    seen: list[TrainConfig] = []
    with _fake_fit(seen):
        result = train(TrainConfig(**fields), run_dir=tmp_path / "run", progress=False)
    result.path.joinpath("checkpoints").mkdir()
    RunDir(result.path).last_checkpoint.write_bytes(b"")
    return result.path, seen


def test_only_the_length_of_a_resumed_run_can_change_and_only_upwards(tmp_path, capsys):
    path, seen = _finished(tmp_path, max_epochs=3)
    for argv, message in [
        (["--epochs", "3"], "has finished max_epochs=3; max_epochs=3 would not extend it"),
        (["--epochs", "2"], "max_epochs=2 would not extend it"),
        (["--set", "max_epochs=4", "--set", "lr=0.1"], "--set would change it"),
        (["--epochs", "4", "--head", "arcface"], "--head would change it"),
        (["--epochs", "4", "--set", "max_epochs=5"], "disagree"),
        (["--set", "max_steps=100"], "counts its length in max_epochs"),
        (["--set", "max_epochs=four"], "would not extend it"),
    ]:
        assert main(["train", "--resume", str(path), *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, (argv, err)
    assert RunDir(path).read_config().max_epochs == 3 and RunDir(path).read_metrics()["epochs"] == 3
    assert RunIndex(tmp_path).get("run").status == "finished"
    with _fake_fit(seen):
        assert main(["train", "--resume", str(path), "--set", "max_epochs=5", "--no-plots"]) == 0
    assert seen[-1].max_epochs == 5 and RunDir(path).read_config().max_epochs == 5


def test_a_run_that_counts_steps_extends_by_steps_and_a_cosine_extension_warns(tmp_path, capsys):
    path, seen = _finished(tmp_path, max_steps=50, schedule="cosine")
    assert main(["train", "--resume", str(path), "--epochs", "9"]) == 2
    assert "counts its length in max_steps (max_steps=50), not max_epochs: extend it with --set max_steps=N" in \
        capsys.readouterr().err
    with _fake_fit(seen):
        assert main(["train", "--resume", str(path), "--set", "max_steps=80", "--no-plots"]) == 0
    assert seen[-1].max_steps == 80 and RunIndex(tmp_path).get("run").config["max_steps"] == 80
    assert "cosine schedule anneals over the run's length" in capsys.readouterr().err


def test_an_extended_run_that_is_killed_has_no_stale_metrics_and_resumes_to_its_new_length(tmp_path):
    path, seen = _finished(tmp_path, max_epochs=2)
    with mock.patch.object(fit, "fit_and_evaluate", side_effect=KeyboardInterrupt()), pytest.raises(KeyboardInterrupt):
        train(resume=path, extend={"max_epochs": 4}, progress=False)
    assert RunDir(path).read_metrics() is None and RunIndex(tmp_path).get("run").status == "interrupted"
    with _fake_fit(seen):
        train(resume=path, progress=False)  # a plain resume continues to the new length
    assert seen[-1].max_epochs == 4
