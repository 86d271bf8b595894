"""A run's bookkeeping (featspace.train.run) around a stand-in fit: claims, statuses and resume rules."""

from __future__ import annotations

from unittest import mock

import pytest

from featspace.config import TrainConfig
from featspace.rundir import RunDir, RunIndex
from featspace.train import fit, train


def _fit_that(outcome):
    def fake_fit(config, rundir, checkpoint, *, progress):
        if isinstance(outcome, BaseException):
            raise outcome
        rundir.write_metrics(outcome)
        return outcome
    return mock.patch.object(fit, "fit_and_evaluate", fake_fit)


def test_finished_failed_and_interrupted_runs_are_marked(tmp_path):
    with _fit_that({"accuracy": 0.9}):
        done = train(TrainConfig(), root=tmp_path, progress=False)
    with _fit_that(RuntimeError("boom")), pytest.raises(RuntimeError):
        train(TrainConfig(), run_dir=tmp_path / "failed", progress=False)
    with _fit_that(KeyboardInterrupt()), pytest.raises(KeyboardInterrupt):
        train(TrainConfig(), run_dir=tmp_path / "stopped", progress=False)
    index = RunIndex(tmp_path)
    assert index.get(done.run_id).status == "finished" and index.get(done.run_id).metrics == {"accuracy": 0.9}
    assert index.get("failed").status == "failed" and "boom" in index.get("failed").error
    assert index.get("stopped").status == "interrupted"


def test_a_claimed_directory_is_never_trained_again(tmp_path):
    with _fit_that({"accuracy": 0.9}):
        train(TrainConfig(head="softmax"), run_dir=tmp_path / "run", progress=False)
        with pytest.raises(ValueError, match="already holds a run"):
            train(TrainConfig(head="arcface"), run_dir=tmp_path / "run", progress=False)
    assert RunDir(tmp_path / "run").read_config().head == "softmax"


def test_resume_refuses_a_run_that_is_still_training(tmp_path):
    rundir = RunDir(tmp_path / "live")
    rundir.claim(TrainConfig())
    RunIndex(tmp_path).start(rundir.name, rundir.path, TrainConfig().to_dict())  # owned by this live process
    with _fit_that({"accuracy": 0.9}), pytest.raises(ValueError, match="still being trained"):
        train(resume=rundir.path, progress=False)
    assert RunIndex(tmp_path).get("live").status == "running"


def test_resume_of_an_interrupted_run_reads_its_own_config_and_checkpoint(tmp_path):
    seen = {}

    def fake_fit(config, rundir, checkpoint, *, progress):
        seen.update(head=config.head, checkpoint=checkpoint)
        return {"accuracy": 1.0}

    with _fit_that(KeyboardInterrupt()), pytest.raises(KeyboardInterrupt):
        train(TrainConfig(head="icv"), run_dir=tmp_path / "run", progress=False)
    RunDir(tmp_path / "run").last_checkpoint.parent.mkdir()
    RunDir(tmp_path / "run").last_checkpoint.write_bytes(b"")
    with mock.patch.object(fit, "fit_and_evaluate", fake_fit):
        result = train(resume=tmp_path / "run", progress=False)
    assert seen == {"head": "icv", "checkpoint": str(RunDir(tmp_path / "run").last_checkpoint)}
    assert result.metrics == {"accuracy": 1.0} and RunIndex(tmp_path).get("run").status == "finished"


def test_eval_refuses_an_unfinished_run_and_list_shows_no_numbers_beside_it(tmp_path, capsys):
    """Issue 17, item 4: an interrupted run's checkpoint holds partial weights; `featspace eval` must not
    write metrics from them, and `featspace list runs` must not show an accuracy beside "interrupted"."""
    from featspace.cli import main
    from featspace.train import evaluate_run

    with _fit_that(KeyboardInterrupt()), pytest.raises(KeyboardInterrupt):
        train(TrainConfig(), run_dir=tmp_path / "stopped", progress=False)
    RunIndex(tmp_path).update_metrics("stopped", {"accuracy": 0.123})  # as an older `eval` left it
    with pytest.raises(ValueError, match="stopped is interrupted, not finished: resume it"):
        evaluate_run(tmp_path / "stopped")
    assert RunDir(tmp_path / "stopped").read_metrics() is None
    assert main(["eval", str(tmp_path / "stopped")]) == 2
    assert main(["list", "runs", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "interrupted" in out.out and "0.1230" not in out.out
    assert out.err.strip().count("\n") == 0 and "not finished" in out.err


def test_report_on_run_directories_leaves_out_runs_the_index_calls_unfinished(tmp_path):
    from featspace.report.build import collect_report

    with _fit_that({"accuracy": 0.9}):
        train(TrainConfig(head="softmax"), run_dir=tmp_path / "done", progress=False)
    with _fit_that(KeyboardInterrupt()), pytest.raises(KeyboardInterrupt):
        train(TrainConfig(head="icv"), run_dir=tmp_path / "stopped", progress=False)
    RunDir(tmp_path / "stopped").write_metrics({"accuracy": 0.1})  # a metrics.json alone proves nothing
    report, _ = collect_report([tmp_path / "done", tmp_path / "stopped"], out_dir=tmp_path / "report")
    assert [run.id for run in report.runs] == ["done"]
    assert any("stopped is interrupted in its index; left out" in w for w in report.warnings)


def test_resume_refuses_overrides_and_finished_runs(tmp_path, capsys):
    """Issue 17, item 8: `--resume RUN --epochs 3 --head arcface --set lr=0.1` ignored every override, and
    resuming a finished run rewrote its train_seconds."""
    from featspace.cli import main

    with _fit_that({"accuracy": 0.9, "train_seconds": 0.68}):
        train(TrainConfig(), run_dir=tmp_path / "done", progress=False)
    code = main(["train", "--resume", str(tmp_path / "done"), "--epochs", "3", "--head", "arcface",
                 "--set", "lr=0.1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "--head, --set would change it" in err  # --epochs alone would extend it (test_extend.py)
    with pytest.raises(ValueError, match="has finished; there is nothing to resume"):
        train(resume=tmp_path / "done", progress=False)
    assert RunDir(tmp_path / "done").read_metrics()["train_seconds"] == 0.68
    assert RunIndex(tmp_path).get("done").status == "finished"


GLOO_PEER_DIED = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error "
                  "[127.0.0.1]:36547: Connection reset by peer. This is typically caused by a remote worker hanging")


@pytest.mark.parametrize("error, status", [
    (RuntimeError(GLOO_PEER_DIED), "interrupted"),  # what rank 0 of a 2-process gloo run got when rank 1 died
    (RuntimeError("CUDA out of memory"), "failed"),
    (ValueError("Connection reset by peer"), "failed"),  # a ValueError is ours, never a lost peer
])
def test_a_dead_ddp_peer_leaves_the_run_interrupted_not_failed(tmp_path, error, status):
    """Issue 17, item 5: a DDP peer's death marked the run "failed", so a bench retrained it from scratch
    instead of resuming it from its checkpoint."""
    with _fit_that(error), pytest.raises(type(error)):
        train(TrainConfig(), run_dir=tmp_path / "run", progress=False)
    assert RunIndex(tmp_path).get("run").status == status
