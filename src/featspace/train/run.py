"""``train(config)``: one run's bookkeeping around the fit — its directory, its index row, its rank.

    config ─► claim the run directory (atomically) + index row "running"      (or --resume: the run's own config
           ─► featspace.train.fit.fit_and_evaluate                              and last checkpoint)
           ─► index row "finished" with the metrics; "failed" / "interrupted" when the fit raises

Checkpoints are written every epoch (atomically); ``train(resume=RUN_DIR)`` continues a killed run from its
last checkpoint and, because every epoch re-seeds from (seed, epoch), reaches the same final metrics as an
uninterrupted run. ``train(resume=RUN_DIR, extend={"max_epochs": N})`` trains a finished run on to N epochs from its
last checkpoint and evaluates it again: with a schedule that does not depend on the run's length (none, multi-step)
the result is the run trained for N epochs from the start. A run that raises is marked "failed", one that is
interrupted "interrupted" — never left looking finished.

Under DDP every process runs this; only rank 0 claims the directory, owns the index row and writes the
evaluation. The processes Lightning's launcher starts find the directory in ``RUN_DIR_ENV``; torchrun and SLURM
launches pass the same ``run_dir`` to every process.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from featspace import models
from featspace.config import TrainConfig
from featspace.distributed import launch_rank
from featspace.rundir import DEFAULT_ROOT, RunDir, RunIndex, new_run_dir
from featspace.train import fit as fitting
from featspace.train import tracking
from featspace.train.parts import unknown_backbone_error

__all__ = ["EXTENDABLE", "RUN_DIR_ENV", "RunResult", "extended_config", "launch_rank", "lost_a_peer", "train"]

RUN_DIR_ENV = "FEATSPACE_RUN_DIR"


@dataclass
class RunResult:
    run_id: str
    path: Path
    metrics: dict[str, float]
    plots: list[Path] = field(default_factory=list)


@dataclass
class _Run:
    config: TrainConfig
    rundir: RunDir
    checkpoint: str | None     # the checkpoint a resumed fit starts from
    index: RunIndex | None     # None on processes of rank > 0: rank 0 owns the row


#: the config fields ``train(resume=..., extend=...)`` may raise: the length of the run, nothing that would make its
#: checkpoint another config's
EXTENDABLE = ("max_epochs", "max_steps")


def extended_config(config: TrainConfig, extend: Mapping[str, Any], *, finished: bool, where: Path) -> TrainConfig:
    """``config`` trained for longer: ``extend`` sets the field that counts the run's length (``max_epochs``, or
    ``max_steps`` for a run that counts optimiser steps) to at least its value (more than it, for a finished
    run). Anything else is a one-line ValueError."""
    other = sorted(set(extend) - set(EXTENDABLE))
    if other:
        raise ValueError(f"--resume continues a run with the config it was started with; only its length "
                         f"({' or '.join(EXTENDABLE)}) can be raised, not {', '.join(other)}: start a new run instead")
    counted = "max_steps" if config.max_steps else "max_epochs"
    wrong = sorted(set(extend) - {counted})
    if wrong:
        how = "--set max_steps=N" if config.max_steps else "--epochs N"
        raise ValueError(f"{where} counts its length in {counted} ({counted}={getattr(config, counted)}), not "
                         f"{wrong[0]}: extend it with {how}")
    target = extend[counted]
    current = getattr(config, counted)
    if isinstance(target, bool) or not isinstance(target, int) or target < current or (finished and target == current):
        least = current + 1 if finished else current
        raise ValueError(f"{where} {'has finished' if finished else 'is set to'} {counted}={current}; "
                         f"{counted}={target!r} would not extend it (give an integer >= {least})")
    return TrainConfig.from_dict({**config.to_dict(), counted: target})


def _open_run(config: TrainConfig | None, *, root: str | Path, resume: str | Path | None,
              run_dir: str | Path | None, suite: str | None, cell: str | None,
              extend: Mapping[str, Any] | None = None) -> _Run:
    """Where the run lives and what it starts from; on rank 0, its index row marked "running"."""
    rank = launch_rank()
    if extend and resume is None:
        raise ValueError("extend= lengthens a run given by resume=; a new run takes the length in its config")
    if resume is not None:
        rundir = RunDir(resume)
        config = rundir.read_config()
        checkpoint = str(rundir.last_checkpoint) if rundir.last_checkpoint.is_file() else None
        if rank > 0:  # rank 0 has written the extended config already, or is about to with the same values
            if extend:
                config = TrainConfig.from_dict({**config.to_dict(), **extend})
            return _Run(config, rundir, checkpoint, None)
        index = RunIndex(rundir.path.parent)
        record = index.get(rundir.name)
        finished = record.status == "finished" if record is not None else rundir.metrics_path.is_file()
        if record is not None and record.status == "running":  # the index reports a dead owner as "interrupted"
            raise ValueError(f"{rundir.path} is still being trained (pid {record.pid} on {record.host}); "
                             "wait for it or stop it before resuming")
        if finished and not extend:  # resuming would only rewrite its training facts
            raise ValueError(f"{rundir.path} has finished; there is nothing to resume (train it for longer with "
                             "--epochs N)")
        if extend:
            config = extended_config(config, extend, finished=finished, where=rundir.path)
            if checkpoint is None:
                raise ValueError(f"{rundir.path} has no {rundir.last_checkpoint.name} to continue from")
            _warn_if_schedule_depends_on_length(config)
            rundir.write_config(config)
            # its metrics were those of the shorter run, whose weights the extension overwrites: until the extended
            # run is evaluated the directory holds no metrics.json, as any unfinished run
            rundir.metrics_path.unlink(missing_ok=True)
        if record is None:  # a run directory copied from elsewhere: index it here
            index.start(rundir.name, rundir.path, config.to_dict(), suite=suite, cell=cell)
        index.resume(rundir.name, config=config.to_dict() if extend else None)
        return _Run(config, rundir, checkpoint, index)

    if config is None:
        raise ValueError("train() needs a config or a run directory to resume")
    config.validate()
    tracking.require_loggers(config)
    if rank > 0:
        shared = run_dir or os.environ.get(RUN_DIR_ENV)
        if shared is None:
            raise ValueError("this process has a non-zero rank but no run directory: pass the same --run-dir to "
                             "every process (torchrun, SLURM, several nodes)")
        return _Run(config, RunDir(shared), None, None)
    if run_dir is not None:
        rundir = RunDir(run_dir)
    else:
        _, path = new_run_dir(root, prefix=f"{config.head}-{config.dataset}-")
        rundir = RunDir(path)
    rundir.claim(config)
    index = RunIndex(rundir.path.parent)
    index.start(rundir.name, rundir.path, config.to_dict(), suite=suite, cell=cell)
    return _Run(config, rundir, None, index)


def _warn_if_schedule_depends_on_length(config: TrainConfig) -> None:
    """A cosine schedule anneals over the whole run, so lengthening a run changes the schedule of the epochs still
    to come (multi-step milestones and warm-up count from the start and do not change)."""
    if config.schedule == "cosine":
        print("featspace: warning: the cosine schedule anneals over the run's length; the extended epochs follow "
              "the cosine of the new length from the step reached, so the run will differ from one trained for "
              "that length from the start", file=sys.stderr)


#: what gloo and NCCL say when the process at the other end of a collective is gone
_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted",
              "NCCL error: remote process exited", "Socket Timeout", "DistNetworkError")


def lost_a_peer(err: BaseException) -> bool:
    """Whether a fit ended because another DDP process died, not because of this run: a distributed backend
    error, or a RuntimeError with what gloo or NCCL say then ("Connection reset by peer", ...)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    if names & {"DistBackendError", "DistNetworkError", "DistStoreError"}:
        return True
    return isinstance(err, RuntimeError) and any(text in str(err) for text in _PEER_LOST)


def _mark(index: RunIndex, run_id: str, status: str, why: str) -> None:
    """Record how a run ended without hiding why it ended: if the index cannot be written either (the disk that
    stopped the checkpoint is full), the row keeps "running" with a dead pid, which reads as "interrupted"."""
    try:
        index.mark(run_id, status, why)
    except Exception:  # noqa: BLE001 (the run's own error is the one to report)
        pass


def _with_backbone(config: TrainConfig, backbone: nn.Module) -> TrainConfig:
    """The config of a run trained with a ready module: its backbone named ``module:<ClassName>`` (or the
    Backbone's own name), so that the run's config.yaml says what it was trained with."""
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"backbone must be a torch.nn.Module, got {type(backbone).__name__}")
    if config.backbone_params:
        raise ValueError(f"backbone_params ({', '.join(sorted(config.backbone_params))}) configure a backbone built "
                         "by name; a ready module takes none: leave them out")
    return dataclasses.replace(config, backbone=models.module_name(backbone))


def train(config: TrainConfig | None = None, *, root: str | Path = DEFAULT_ROOT, resume: str | Path | None = None,
          run_dir: str | Path | None = None, suite: str | None = None, cell: str | None = None,
          progress: bool = True, extend: Mapping[str, Any] | None = None,
          backbone: nn.Module | None = None) -> RunResult:
    """Train and evaluate one run; returns its id, directory and metrics.

    ``run_dir`` names the run directory instead of a fresh one under ``root``; ``resume`` continues an
    interrupted run from its last checkpoint; with ``extend={"max_epochs": N}`` (``max_steps`` for a run that counts
    steps) it trains a finished or interrupted run on to N epochs and evaluates it again (``extended_config``).
    ``suite`` and ``cell`` label the index row (``featspace bench``).
    ``backbone``: a ready ``nn.Module`` (images ``[B, C, H, W]`` → features ``[B, F]``) to train instead of
    ``config.backbone``; F is its ``feature_dim`` attribute or the width of one dry forward, and the linear neck
    to ``config.embedding_dim`` is added as for any backbone (``featspace.models.wrap_module``). The run's config
    records it as ``module:<ClassName>``; ``featspace eval`` and ``--resume`` on such a run need a factory of that
    name registered in a module passed with ``--import`` (or ``train(resume=RUN, backbone=module)``).
    Figures are not drawn here: ``featspace.report.run_figures.draw_run_figures(run_dir)`` draws them from the
    finished run directory (the ``train`` and ``bench`` commands do).
    """
    fitting.quiet_lightning()
    if backbone is not None and resume is not None:
        trained_with = RunDir(resume).read_config().backbone
        if models.module_name(backbone) != trained_with:
            raise ValueError(f"{resume} was trained with backbone {trained_with!r}, not "
                             f"{models.module_name(backbone)!r}")
    elif backbone is not None and config is not None:
        config = _with_backbone(config, backbone)
    elif config is not None or resume is not None:
        # a backbone no --import registered: said before a directory is claimed or a run marked running
        missing = unknown_backbone_error(config if resume is None else RunDir(resume).read_config())
        if missing is not None:
            raise missing
    run = _open_run(config, root=root, resume=resume, run_dir=run_dir, suite=suite, cell=cell, extend=extend)
    rundir = run.rundir
    # a ready backbone module travels beside the config (never through it: a config is data)
    extra = {"backbone": backbone} if backbone is not None else {}
    # processes that Lightning's DDP launcher starts re-run this command; they find the run here
    os.environ[RUN_DIR_ENV] = str(rundir.path.resolve())
    if run.index is None:
        fitting.fit_and_evaluate(run.config, rundir, run.checkpoint, progress=False, **extra)
        return RunResult(rundir.name, rundir.path, {})
    try:
        metrics = fitting.fit_and_evaluate(run.config, rundir, run.checkpoint, progress=progress, **extra)
    except (KeyboardInterrupt, SystemExit) as err:
        _mark(run.index, rundir.name, "interrupted", str(err) or "interrupted by the user or a signal")
        raise
    except BaseException as err:
        # a DDP peer that died (killed, preempted) leaves this process's checkpoint intact: the run resumes
        status = "interrupted" if lost_a_peer(err) else "failed"
        _mark(run.index, rundir.name, status, f"{type(err).__name__}: {err}")
        raise
    run.index.finish(rundir.name, metrics or {})
    return RunResult(rundir.name, rundir.path, metrics or {})

