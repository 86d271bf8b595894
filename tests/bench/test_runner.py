"""The bench's skip/resume rules, with a fake train function (milliseconds per run) and with a real
subprocess killed by SIGKILL in the middle of a run."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from featspace.bench import plan_suite, run_suite
from featspace.bench.runner import _cell_lock, format_duration
from featspace.rundir import RunIndex
from featspace.suite import parse_suite
from tests._kill import start_and_wait_for_pause
from tests.bench._fakes import FakeTrain

REPO = Path(__file__).resolve().parents[2]


def tiny_suite(name: str = "tiny"):
    """2 heads x 2 lambdas... as a 4-configuration matrix on the digits recipe."""
    return parse_suite({
        "name": name,
        "recipe": "digits-demo",
        "seeds": 1,
        "minutes_per_run": 0.5,
        "matrix": {"head": [{"label": "softmax", "head": "softmax"},
                            {"label": "icv", "head": "icv"}],
                   "embedding_dim": [2, 4]},
    })


def finished_by_cell(root: Path, suite: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for record in RunIndex(root).query(suite=suite, status="finished"):
        out.setdefault(record.cell, []).append(record.id)
    return out


def test_interrupt_on_third_cell_then_rerun_completes_without_rerunning_finished(tmp_path):
    suite = tiny_suite()
    cells = [c.key for c in suite.expand()]
    first = FakeTrain(interrupt_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, root=tmp_path, train_fn=first, progress=False)
    assert [c for _, c in first.calls] == cells[:3]
    index = RunIndex(tmp_path)
    statuses = {r.cell: r.status for r in index.query(suite="tiny")}
    assert statuses == {cells[0]: "finished", cells[1]: "finished", cells[2]: "interrupted"}
    before = finished_by_cell(tmp_path, "tiny")

    second = FakeTrain()
    records = run_suite(suite, root=tmp_path, train_fn=second, progress=False)
    # the interrupted cell is resumed from its checkpoint, the rest trained, nothing finished is touched
    assert second.calls == [("resume", cells[2]), ("train", cells[3])]
    after = finished_by_cell(tmp_path, "tiny")
    assert set(after) == set(cells)
    assert all(len(ids) == 1 for ids in after.values())
    assert {k: after[k] for k in before} == before
    assert [r.cell for r in records] == cells and all(r.status == "finished" for r in records)
    resumed = RunIndex(tmp_path).query(suite="tiny", cell=cells[2])
    assert len(resumed) == 1 and resumed[0].metrics["resumed"] == 1.0  # the same run, continued

    third = FakeTrain()
    run_suite(suite, root=tmp_path, train_fn=third, progress=False)
    assert third.calls == []  # a finished bench runs nothing


def test_interrupted_without_checkpoint_is_trained_afresh_and_old_row_kept(tmp_path):
    suite = tiny_suite()
    cells = [c.key for c in suite.expand()]
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, root=tmp_path, train_fn=FakeTrain(interrupt_on_call=1, checkpoint=False), progress=False)
    fake = FakeTrain()
    run_suite(suite, root=tmp_path, train_fn=fake, progress=False)
    assert fake.calls[0] == ("train", cells[0])
    rows = RunIndex(tmp_path).query(suite="tiny", cell=cells[0])
    assert [r.status for r in rows] == ["interrupted", "finished"]


def test_running_row_of_dead_process_is_resumed(tmp_path):
    suite = tiny_suite()
    cells = [c.key for c in suite.expand()]
    fake = FakeTrain(interrupt_on_call=1)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, root=tmp_path, train_fn=fake, progress=False)
    index = RunIndex(tmp_path)
    (row,) = index.query(suite="tiny", cell=cells[0])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    with index._connect() as db:  # as a SIGKILLed run leaves it: "running", owned by a dead pid
        db.execute("UPDATE runs SET status = 'running', pid = ? WHERE id = ?", (int(dead), row.id))
    assert index.get(row.id).status == "interrupted"
    fake = FakeTrain()
    run_suite(suite, root=tmp_path, train_fn=fake, progress=False)
    assert fake.calls[0] == ("resume", cells[0])
    assert index.get(row.id).status == "finished"


def test_running_row_of_live_process_and_locked_cell_are_skipped(tmp_path):
    suite = tiny_suite()
    cells = [c.key for c in suite.expand()]
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, root=tmp_path, train_fn=FakeTrain(interrupt_on_call=1), progress=False)
    index = RunIndex(tmp_path)
    (row,) = index.query(suite="tiny", cell=cells[0])
    index.resume(row.id)  # "running", owned by this (live) process
    assert [p.action for p in plan_suite(suite, root=tmp_path)] == ["busy", "train", "train", "train"]
    fake = FakeTrain()
    with _cell_lock(tmp_path, "tiny", cells[1]) as locked:
        assert locked
        run_suite(suite, root=tmp_path, train_fn=fake, progress=False)
    assert [c for _, c in fake.calls] == cells[2:]


def test_failed_run_does_not_stop_the_bench_and_is_retried(tmp_path):
    suite = tiny_suite()
    cells = [c.key for c in suite.expand()]
    fake = FakeTrain(fail_on_call=2)
    records = run_suite(suite, root=tmp_path, train_fn=fake, progress=False)
    assert [r.status for r in records] == ["finished", "failed", "finished", "finished"]
    assert "fake failure" in records[1].error
    fake = FakeTrain()
    run_suite(suite, root=tmp_path, train_fn=fake, progress=False)
    assert fake.calls == [("train", cells[1])]


def test_seeds_and_overrides_make_distinct_cells(tmp_path):
    suite = tiny_suite()
    fake = FakeTrain()
    records = run_suite(suite, seeds=2, root=tmp_path, train_fn=fake, progress=False)
    assert len(records) == 8 and len({r.cell for r in records}) == 8
    assert [r.seed for r in records] == [0, 0, 0, 0, 1, 1, 1, 1]  # every configuration once before seed 1
    fake = FakeTrain()
    run_suite(suite, seeds=2, overrides=["max_epochs=3"], root=tmp_path, train_fn=fake, progress=False)
    assert len(fake.calls) == 8  # a different max_epochs is a different cell
    fake = FakeTrain()
    run_suite(suite, seeds=[1], root=tmp_path, train_fn=fake, progress=False)
    assert fake.calls == []


def test_progress_lines_count_and_eta(tmp_path):
    stream = io.StringIO()
    run_suite(tiny_suite(), root=tmp_path, train_fn=FakeTrain(), stream=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("bench tiny: 4 cells, 0 finished or running elsewhere, 4 to run")
    starts = [line for line in lines if "training ... ETA" in line]
    assert [line.split()[0] for line in starts] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert starts[0].endswith("ETA 2 min")  # before any run finished: 4 x minutes_per_run 0.5
    assert lines[-1] == "bench tiny: 4/4 cells finished"
    stream = io.StringIO()
    run_suite(tiny_suite(), root=tmp_path, train_fn=FakeTrain(), stream=stream)
    assert stream.getvalue().count("skipped") == 4


def test_format_duration():
    assert format_duration(0) == "0 min"
    assert format_duration(59) == "1 min"
    assert format_duration(3600 + 61) == "1 h 02 min"


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from featspace.bench import run_suite
    from tests.bench._fakes import FakeTrain
    from tests.bench.test_runner import tiny_suite
    run_suite(tiny_suite(), root=sys.argv[1], train_fn=FakeTrain(epochs=4, pause_after_epoch=(2, 3)), progress=False)
""")


def test_sigkill_midway_then_restart_resumes(tmp_path):
    """A real process running a bench is SIGKILLed in the middle of its third run (after its second epoch's
    checkpoint; no handler can run); the next invocation sees the dead owner, resumes that run from its
    checkpoint and trains the rest."""
    cells = [c.key for c in tiny_suite().expand()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    proc, _ = start_and_wait_for_pause([sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], cwd=REPO, env=env)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    index = RunIndex(tmp_path)
    statuses = {r.cell: r.status for r in index.query(suite="tiny")}
    assert statuses == {cells[0]: "finished", cells[1]: "finished", cells[2]: "interrupted"}
    before = finished_by_cell(tmp_path, "tiny")

    fake = FakeTrain(epochs=4)
    run_suite(tiny_suite(), root=tmp_path, train_fn=fake, progress=False)
    assert fake.calls == [("resume", cells[2]), ("train", cells[3])]
    after = finished_by_cell(tmp_path, "tiny")
    assert set(after) == set(cells) and all(len(v) == 1 for v in after.values())
    assert {k: after[k] for k in before} == before
