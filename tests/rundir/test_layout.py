"""The run directory's owner: atomic claims, and every file written and read back through it."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import yaml

from featspace.config import TrainConfig
from featspace.rundir import CONFIG, RunDir, RunDirTaken


def test_claim_writes_the_config_once(tmp_path):
    rundir = RunDir(tmp_path / "a" / "run")
    rundir.claim(TrainConfig(head="icv", seed=3))
    assert rundir.is_run() and rundir.read_config().head == "icv" and rundir.read_config().seed == 3
    with pytest.raises(RunDirTaken, match="already holds a run; resume it with --resume"):
        rundir.claim(TrainConfig(head="arcface"))
    assert rundir.read_config().head == "icv"  # the loser never overwrote it
    assert [p.name for p in rundir.path.iterdir()] == [CONFIG]  # no temporary file left behind


def _claim(path: str, head: str, barrier, results) -> None:
    barrier.wait()
    try:
        RunDir(path).claim(TrainConfig(head=head))
        results.put(head)
    except RunDirTaken:
        results.put("taken")


def test_two_processes_claiming_one_directory_at_once_one_wins(tmp_path):
    """Two processes given the same directory at the same instant: exactly one claims it, and the config on disk
    is the winner's (the probe of issue 17, item 2)."""
    # fork where there is one: the children only race for a directory, they need no fresh interpreter
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    for attempt in range(2):
        path = tmp_path / f"run-{attempt}"
        barrier, results = context.Barrier(2), context.Queue()
        procs = [context.Process(target=_claim, args=(str(path), head, barrier, results))
                 for head in ("softmax", "arcface")]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=120)
        outcomes = sorted(results.get(timeout=10) for _ in procs)
        assert outcomes.count("taken") == 1, outcomes
        winner = next(o for o in outcomes if o != "taken")
        assert yaml.safe_load((path / CONFIG).read_text())["head"] == winner


def test_files_round_trip(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.claim(TrainConfig())
    assert rundir.read_metrics() is None and rundir.read_fewshot() is None and rundir.read_pair_angles() is None
    rundir.write_metrics({"accuracy": 0.5, "d_kl": float("nan")})
    assert rundir.read_metrics() == {"accuracy": 0.5, "d_kl": None}
    rundir.write_embeddings({"test_labels": np.arange(3), "class_names": np.array(["a", "b", "c"])})
    arrays = rundir.read_embeddings()
    assert arrays["class_names"].tolist() == ["a", "b", "c"] and arrays["test_labels"].tolist() == [0, 1, 2]
    rundir.write_centroid_history(np.zeros((2, 3, 4), dtype=np.float32), "class_means")
    history, source = rundir.read_centroid_history()
    assert history.shape == (2, 3, 4) and source == "class_means"
    rundir.fewshot.write_text("{not json")
    assert rundir.read_fewshot() is None  # unreadable: evaluated again, never a crash


def test_evaluation_checkpoint_is_best_only_with_early_stopping(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.checkpoints.mkdir(parents=True)
    rundir.best_checkpoint.write_bytes(b"")
    assert rundir.evaluation_checkpoint(TrainConfig(early_stopping_patience=5)) == rundir.best_checkpoint
    assert rundir.evaluation_checkpoint(TrainConfig()) == rundir.last_checkpoint
    rundir.best_checkpoint.unlink()
    assert rundir.evaluation_checkpoint(TrainConfig(early_stopping_patience=5)) == rundir.last_checkpoint
