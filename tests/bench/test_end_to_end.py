"""Real benches on scikit-learn's digits (no download): the bench and report commands end to end, and a
real training process killed with SIGKILL mid-run and resumed from its checkpoint."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from featspace.bench import run_suite
from featspace.commands import bench, report
from featspace.rundir import RunIndex
from featspace.suite import parse_suite
from featspace.train import train
from featspace.train.fit import PAUSE_ENV
from tests._kill import start_and_wait_for_pause

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

SUITE_YAML = textwrap.dedent("""
    name: digits-mini
    description: "two heads on the digits, one epoch"
    source: "none"
    recipe: digits-demo
    set: {max_epochs: 1, tsne: false}
    seeds: 2
    minutes_per_run: 0.1
    matrix:
      head:
        - {label: softmax, head: softmax}
        - {label: "ICV λ=1", head: icv}
    tables:
      - title: "Accuracy"
        rows: [head]
        metrics:
          - {key: accuracy, name: "accuracy (%)", scale: 100, format: ".1f"}
          - {key: ncc_accuracy, name: "NCC (%)", scale: 100, format: ".1f"}
          - {key: d_em, name: "D_EM", format: ".1f"}
        paper: {source: "made up", rows: {softmax: [50.0, null, null]}}
    figures:
      - {title: "embeddings", plots: [embeddings.png, angles.png]}
""")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="featspace")
    sub = p.add_subparsers(dest="command", required=True)
    bench.add_parser(sub)
    report.add_parser(sub)
    return p


def test_bench_then_report_on_digits(tmp_path, capsys):
    suite_file = tmp_path / "digits-mini.yaml"
    suite_file.write_text(SUITE_YAML, encoding="utf-8")
    root = tmp_path / "runs"
    args = parser().parse_args(["bench", str(suite_file), "--root", str(root), "--quiet"])
    assert args.func(args) == 0
    finished = RunIndex(root).query(suite="digits-mini", status="finished")
    assert len(finished) == 4 and len({r.cell for r in finished}) == 4
    assert all(r.metrics["epochs"] == 1.0 for r in finished)

    args = parser().parse_args(["bench", str(suite_file), "--root", str(root)])
    assert args.func(args) == 0  # everything finished: nothing runs again
    assert "4/4 cells finished" in capsys.readouterr().err
    assert len(RunIndex(root).query(suite="digits-mini")) == 4

    out = tmp_path / "report"
    args = parser().parse_args(["report", str(suite_file), "--root", str(root), "--out", str(out)])
    assert args.func(args) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "mean ± std over n = 2 runs (seeds)" in md
    assert "| head | accuracy (%) | accuracy (%) (paper) | NCC (%) | D_EM |" in md
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "ICV λ=1" in page and "made up" in page
    assert len(list((out / "figures").glob("*embeddings.png"))) == 2
    assert page.count("<img ") >= 4


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from featspace.bench import run_suite
    from featspace.train import train
    from tests.bench.test_end_to_end import long_suite
    run_suite(long_suite(), root=sys.argv[1], train_fn=train, progress=False)
""")


def long_suite():
    return parse_suite({"name": "digits-long", "recipe": "digits-demo",
                        "set": {"max_epochs": 3, "tsne": False, "val_fraction": 0.0},
                        "matrix": {"head": ["softmax", "icv"]}})


def test_real_bench_killed_with_sigkill_resumes_from_checkpoint(tmp_path):
    """The bench's second run pauses after its second epoch's checkpoint (the fit's test hook) and is SIGKILLed
    there; the next bench resumes that run, keeps the first, and finishes both."""
    cells = [c.key for c in long_suite().expand()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]), PAUSE_ENV: "2:2"}
    proc, _ = start_and_wait_for_pause([sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                                       stdout=subprocess.DEVNULL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    index = RunIndex(tmp_path)
    before = {r.cell: r for r in index.query(suite="digits-long")}
    assert before[cells[0]].status == "finished" and before[cells[1]].status == "interrupted"
    assert (Path(before[cells[1]].path) / "checkpoints" / "last.ckpt").is_file()

    records = run_suite(long_suite(), root=tmp_path, train_fn=train, progress=False)
    assert [r.status for r in records] == ["finished", "finished"]
    assert records[0].id == before[cells[0]].id and records[0].finished == before[cells[0]].finished
    assert records[1].id == before[cells[1]].id  # the killed run itself, continued
    assert records[1].metrics["epochs"] == 3.0
    assert len(index.query(suite="digits-long")) == 2
