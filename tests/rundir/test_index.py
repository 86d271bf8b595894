"""Run directories and the SQLite index."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from featspace.rundir import RunIndex, new_run_dir


def test_run_dirs_are_unique_even_when_created_at_once(tmp_path):
    made: list[str] = []

    def make():
        for _ in range(20):
            made.append(new_run_dir(tmp_path, prefix="x-")[0])

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 80 and len(set(made)) == 80


def test_index_lifecycle(tmp_path):
    index = RunIndex(tmp_path)
    run_id, path = new_run_dir(tmp_path)
    config = {"head": "softmax", "dataset": "digits", "backbone": "small_cnn", "seed": 3, "recipe": "r"}
    index.start(run_id, path, config, suite="s", cell="c1")
    record = index.get(run_id)
    assert record.status == "running" and record.seed == 3 and record.config == config and record.code_version
    index.finish(run_id, {"accuracy": 0.9})
    record = index.get(run_id)
    assert record.status == "finished" and record.metrics == {"accuracy": 0.9} and record.finished
    assert [r.id for r in index.query(suite="s", status="finished")] == [run_id]
    assert index.query(suite="other") == []


def test_dead_running_run_reads_as_interrupted(tmp_path):
    index = RunIndex(tmp_path)
    run_id, path = new_run_dir(tmp_path)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    index.start(run_id, path, {"head": "softmax"})
    with index._connect() as db:
        db.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead_pid, run_id))
    assert index.get(run_id).status == "interrupted"
    index.resume(run_id)
    assert index.get(run_id).status == "running" and index.get(run_id).pid == os.getpid()


def test_query_rejects_unknown_columns_and_takes_values_as_parameters(tmp_path):
    index = RunIndex(tmp_path)
    with pytest.raises(ValueError, match="cannot filter"):
        index.query(**{"1=1; DROP TABLE runs; --": 1})
    run_id, path = new_run_dir(tmp_path)
    index.start(run_id, path, {"head": "x' OR '1'='1"})
    assert index.query(head="nothing' OR '1'='1") == []
    assert len(index.query(head="x' OR '1'='1")) == 1


def test_code_version_is_dirty_only_for_the_package_files(tmp_path, monkeypatch):
    """A README or report edit does not mark a run dirty; an edit of the package's own files does."""
    import shutil

    from featspace.rundir import index as index_module

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    package = tmp_path / "src" / "featspace"
    (package / "rundir").mkdir(parents=True)
    (package / "rundir" / "index.py").write_text("# stand-in\n")
    (tmp_path / "README.md").write_text("readme\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(git + args, cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.setattr(index_module, "__file__", str(package / "rundir" / "index.py"))
    assert not index_module.code_version().endswith(".dirty")
    (tmp_path / "README.md").write_text("readme, edited while a bench runs\n")
    assert not index_module.code_version().endswith(".dirty")
    (package / "rundir" / "index.py").write_text("# stand-in, edited\n")
    assert index_module.code_version().endswith(".dirty")
