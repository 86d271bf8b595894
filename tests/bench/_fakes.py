"""A stand-in for the fit, for bench tests that need runs in milliseconds.

``FakeTrain`` is the real ``featspace.train.train`` — the same run directory, index rows, statuses and resume
rules — with only ``featspace.train.fit.fit_and_evaluate`` replaced by a loop that writes a fake checkpoint
after each "epoch" and finishes, fails or is interrupted on demand. ``pause_after_epoch`` blocks the K-th run
after that epoch's checkpoint and says so on stderr, exactly as ``FEATSPACE_PAUSE_AFTER_EPOCH`` does for a real
fit, so a subprocess kill test stops at a known point instead of racing a clock.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any
from unittest import mock

from featspace.config import TrainConfig
from featspace.io import write_text
from featspace.rundir import RunDir
from featspace.train import fit, train
from featspace.train.run import RunResult


class FakeTrain:
    def __init__(self, *, interrupt_on_call: int | None = None, fail_on_call: int | None = None,
                 checkpoint: bool = True, epochs: int = 2, pause_after_epoch: tuple[int, int] | None = None) -> None:
        self.interrupt_on_call = interrupt_on_call
        self.fail_on_call = fail_on_call
        self.checkpoint = checkpoint
        self.epochs = epochs
        self.pause_after_epoch = pause_after_epoch  # (epoch, call)
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, config: TrainConfig | None = None, *, root: str | Path = "runs",
                 resume: str | Path | None = None, suite: str | None = None, cell: str | None = None,
                 progress: bool = True) -> RunResult:
        self.calls.append(("resume" if resume is not None else "train", cell))
        call = len(self.calls)

        def fake_fit(config: TrainConfig, rundir: RunDir, checkpoint: str | None, *,
                     progress: bool) -> dict[str, Any]:
            start = int(Path(checkpoint).read_text()) + 1 if checkpoint else 1
            for epoch in range(start, self.epochs + 1):
                if self.checkpoint:
                    write_text(rundir.last_checkpoint, str(epoch))
                if self.pause_after_epoch == (epoch, call):
                    print(fit.PAUSE_MESSAGE.format(epoch=epoch, env="FakeTrain"), file=sys.stderr, flush=True)
                    threading.Event().wait()
                if call == self.interrupt_on_call:
                    raise KeyboardInterrupt("fake Ctrl-C")
                if call == self.fail_on_call:
                    raise RuntimeError("fake failure")
            metrics = {"accuracy": 0.5 + 0.01 * config.seed, "resumed": float(checkpoint is not None)}
            rundir.write_metrics(metrics)
            return metrics

        with mock.patch.object(fit, "fit_and_evaluate", fake_fit):
            return train(config, root=root, resume=resume, suite=suite, cell=cell, progress=progress)
