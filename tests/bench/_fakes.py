"""A stand-in for ``featspace.train.train`` that keeps its index contract without training anything.

It creates the run directory and index row exactly as ``train`` does, writes a fake checkpoint after its
first "epoch", and finishes, fails or is interrupted on demand, so the bench's skip/resume logic can be tested
in milliseconds. ``epoch_seconds`` makes a run take time, for the subprocess kill test.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from featspace.io import write_json, write_text
from featspace.train import RunIndex, RunResult, TrainConfig
from featspace.train.runs import new_run_dir


class FakeTrain:
    def __init__(self, *, interrupt_on_call: int | None = None, fail_on_call: int | None = None,
                 checkpoint: bool = True, epochs: int = 2, epoch_seconds: float = 0.0) -> None:
        self.interrupt_on_call = interrupt_on_call
        self.fail_on_call = fail_on_call
        self.checkpoint = checkpoint
        self.epochs = epochs
        self.epoch_seconds = epoch_seconds
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, config: TrainConfig | None = None, *, root: str | Path = "runs",
                 resume: str | Path | None = None, suite: str | None = None, cell: str | None = None,
                 progress: bool = True, plots: bool = True) -> RunResult:
        if resume is not None:
            run_dir = Path(resume)
            run_id = run_dir.name
            index = RunIndex(run_dir.parent)
            with open(run_dir / "config.yaml", encoding="utf-8") as handle:
                config = TrainConfig.from_dict(yaml.safe_load(handle))
            index.resume(run_id)
            start_epoch = int((run_dir / "checkpoints" / "last.ckpt").read_text()) + 1
        else:
            assert config is not None
            index = RunIndex(root)
            run_id, run_dir = new_run_dir(root, prefix=f"{config.head}-")
            write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict()))
            index.start(run_id, run_dir, config.to_dict(), suite=suite, cell=cell)
            start_epoch = 1
        self.calls.append(("resume" if resume is not None else "train", cell))
        call = len(self.calls)
        try:
            for epoch in range(start_epoch, self.epochs + 1):
                time.sleep(self.epoch_seconds)
                if self.checkpoint:
                    write_text(run_dir / "checkpoints" / "last.ckpt", str(epoch))
                if call == self.interrupt_on_call:
                    raise KeyboardInterrupt("fake Ctrl-C")
                if call == self.fail_on_call:
                    raise RuntimeError("fake failure")
        except (KeyboardInterrupt, SystemExit):
            index.mark(run_id, "interrupted", "interrupted by the user or a signal")
            raise
        except BaseException as err:
            index.mark(run_id, "failed", f"{type(err).__name__}: {err}")
            raise
        metrics: dict[str, Any] = {"accuracy": 0.5 + 0.01 * config.seed, "resumed": float(resume is not None)}
        write_json(run_dir / "metrics.json", metrics)
        index.finish(run_id, metrics)
        return RunResult(run_id, run_dir, metrics, [])
