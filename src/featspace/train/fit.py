"""The fit: one run's training on Lightning, top to bottom, then its evaluation.

    seed ─► data, backbone, head ─► FeatureModule ─► checkpoints, history, early stopping, loggers
         ─► Lightning fit (resumed from a checkpoint when given) ─► best weights (early stopping)
         ─► ``featspace.train.evaluate.evaluate_and_save`` ─► final metrics to the loggers (``tracking``)

It knows nothing of the index or of ranks beyond Lightning's own: the bookkeeping of a run (claiming its
directory, resuming, the index row, which process writes what) is ``featspace.train.run``'s.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from featspace import signals
from featspace.config import TrainConfig
from featspace.distributed import launch_rank
from featspace.rundir import BEST_CHECKPOINT, LAST_CHECKPOINT, RunDir
from featspace.train import tracking
from featspace.train.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from featspace.train.evaluate import evaluate_and_save
from featspace.train.history import HistoryWriter
from featspace.train.module import FeatureModule
from featspace.train.parts import build_parts

log = logging.getLogger(__name__)

__all__ = ["PAUSE_ENV", "PauseAfterEpoch", "RelocatableCheckpoint", "checkpoint_callbacks", "fit", "fit_and_evaluate",
           "quiet_lightning"]


@dataclass
class Fitted:
    """A finished fit on the process that evaluates it: the model (best weights when early stopping), its data
    and the facts of the fit that go into metrics.json."""

    module: FeatureModule
    datamodule: Any
    training: dict[str, float]
    loggers: list[Any] = field(default_factory=list)  # the run's experiment trackers, for its final metrics


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # a resumed run writes into its own checkpoint directory, which is the point of resuming
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")


def _is_rank_zero() -> bool:
    return launch_rank() == 0


def _uses_cuda(config: TrainConfig) -> bool:
    return config.accelerator in ("gpu", "cuda") or (config.accelerator == "auto" and torch.cuda.is_available())


def _several_processes(config: TrainConfig) -> bool:
    devices = config.devices
    many = str(devices) == "-1" or (str(devices).isdigit() and int(devices) > 1) or "," in str(devices)
    return many or config.num_nodes > 1


class RelocatableCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint whose state survives a moved or copied run directory.

    Lightning saves the callback's absolute ``dirpath`` in every checkpoint and, when a resumed run's directory
    differs, drops ``best_model_score`` and the best-k bookkeeping: a resumed early-stopping run then takes its
    next epoch for the best and overwrites ``best.ckpt`` with worse weights. Here the saved paths are re-rooted
    in this callback's directory (same file names) before Lightning reads them, so a run directory is
    relocatable."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("dirpath")
        if saved is not None and self.dirpath is not None and saved != self.dirpath:
            def moved(path: Any) -> Any:
                return str(Path(self.dirpath) / Path(path).name) if path else path

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          "best_model_path": moved(state_dict.get("best_model_path")),
                          "kth_best_model_path": moved(state_dict.get("kth_best_model_path")),
                          "last_model_path": moved(state_dict.get("last_model_path")),
                          "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
        super().load_state_dict(state_dict)


def checkpoint_callbacks(directory: Path, has_val: bool) -> tuple[ModelCheckpoint, ModelCheckpoint | None]:
    """``last.ckpt`` after every epoch (what ``--resume`` and ``featspace eval`` read) and, with a validation
    split, ``best.ckpt`` at the lowest validation loss.

    Two callbacks, not one with ``save_last=True``: since Lightning 2.6 a monitored ModelCheckpoint writes its
    ``last.ckpt`` only in epochs where the top-k checkpoint was saved too, so after a final epoch that did not
    improve the validation loss ``last.ckpt`` held an older epoch's weights. Both are
    :class:`RelocatableCheckpoint`: a run directory can be moved between a kill and ``--resume``."""
    last = RelocatableCheckpoint(dirpath=directory, filename=Path(LAST_CHECKPOINT).stem, monitor=None, save_top_k=1,
                           every_n_epochs=1, save_last=False, enable_version_counter=False)
    if not has_val:
        return last, None
    best = RelocatableCheckpoint(dirpath=directory, filename=Path(BEST_CHECKPOINT).stem, monitor="val_loss", mode="min",
                           save_top_k=1, every_n_epochs=1, save_last=False, enable_version_counter=False)
    return last, best


#: ``N`` or ``N:K``: after epoch N of the K-th fit of this process (default the first), say so on stderr and
#: wait to be killed. A test hook: kill-and-resume tests stop a run at a known point instead of racing a clock.
PAUSE_ENV = "FEATSPACE_PAUSE_AFTER_EPOCH"
PAUSE_MESSAGE = "featspace: paused after epoch {epoch} ({env})"
_fits_started = 0


class PauseAfterEpoch(L.Callback):
    """Blocks at the start of epoch N + 1, when epoch N's checkpoints and history are on disk (``PAUSE_ENV``)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and trainer.is_global_zero:
            print(PAUSE_MESSAGE.format(epoch=self.epoch, env=PAUSE_ENV), file=sys.stderr, flush=True)
            threading.Event().wait()  # until a signal ends the process


def _pause_callbacks() -> list[L.Callback]:
    value = os.environ.get(PAUSE_ENV, "")
    if not value:
        return []
    epoch, _, which = value.partition(":")
    return [PauseAfterEpoch(int(epoch))] if _fits_started == int(which or 1) else []


def fit(config: TrainConfig, rundir: RunDir, checkpoint: str | None, *, progress: bool,
        backbone: torch.nn.Module | None = None) -> Fitted | None:
    """Train one run in ``rundir`` (from ``checkpoint`` when resuming); None on a DDP process of rank > 0.
    ``backbone``: a ready module instead of building ``config.backbone`` (``featspace.train.train``)."""
    global _fits_started
    _fits_started += 1
    if config.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"accelerator {config.accelerator!r} needs CUDA, which this machine does not have "
                         "(use --accelerator cpu or auto)")
    L.seed_everything(config.seed, workers=True, verbose=False)
    # a resumed fit's checkpoint replaces the initial (pretrained) weights: they are not read again
    datamodule, backbone, head = build_parts(config, backbone=backbone, initial_weights=checkpoint is None)
    datamodule.setup("fit")
    if datamodule.skipped and _is_rank_zero():
        rundir.write_skipped_files(datamodule.skipped)
        log.warning("skipped %d unreadable files of %s (skip_corrupt); listed in %s", len(datamodule.skipped),
                    config.dataset, rundir.skipped_files)
    steps_per_epoch = max(1, math.ceil(len(datamodule.train_dataloader())))
    module = FeatureModule(backbone, head, config, steps_per_epoch)

    # an image folder's own val/ is a validation split whatever val_fraction says
    has_val = datamodule.has_validation
    last_checkpoint, best_checkpoint = checkpoint_callbacks(rundir.checkpoints, has_val)
    history = HistoryWriter(rundir.history)
    # best before last: Lightning runs checkpoint callbacks in list order, and last.ckpt (what --resume reads)
    # must hold the best-score state as updated by this epoch, or a resumed run could overwrite best.ckpt
    # with worse weights
    callbacks: list[L.Callback] = [c for c in (best_checkpoint, last_checkpoint) if c is not None]
    callbacks.append(history)
    if config.early_stopping_patience and has_val:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience, mode="min"))
    callbacks.extend(_pause_callbacks())
    loggers = tracking.build_loggers(config, rundir)
    if loggers:  # Lightning's LearningRateMonitor refuses a trainer without a logger
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    for logger in loggers:
        logger.log_hyperparams(tracking.hyperparameters(config))
    trainer = L.Trainer(
        max_epochs=-1 if config.max_steps else config.max_epochs,
        max_steps=config.max_steps or -1,
        accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
        strategy=config.strategy, precision=config.precision, deterministic=config.deterministic,
        callbacks=callbacks, logger=loggers or False, default_root_dir=rundir.path,
        plugins=[AtomicCheckpointIO()], enable_progress_bar=progress, enable_model_summary=False,
        sync_batchnorm=config.sync_batchnorm and _uses_cuda(config) and _several_processes(config),
        gradient_clip_val=config.gradient_clip or None, log_every_n_steps=max(1, min(50, steps_per_epoch)),
        limit_val_batches=1.0 if has_val else 0, num_sanity_val_steps=0,
    )
    started = time.time()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    except SystemExit as lightning_exit:  # Lightning's own end of a Ctrl-C or SIGTERM
        signals.reraise_interrupt(lightning_exit)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted")
    train_seconds = time.time() - started
    if not trainer.is_global_zero:
        return None

    if config.early_stopping_patience and best_checkpoint is not None and best_checkpoint.best_model_path:
        # the LACE recipe: evaluate the weights with the best validation loss, not the last ones
        module.load_state_dict(load_checkpoint(best_checkpoint.best_model_path)["state_dict"])
    last = history.rows[-1] if history.rows else {}
    best_score = best_checkpoint.best_model_score if best_checkpoint is not None else None
    training = {
        "epochs": float(trainer.current_epoch), "steps": float(trainer.global_step),
        "train_seconds": train_seconds, "final_train_acc": float(last.get("train_acc", float("nan"))),
        "best_val_loss": float(best_score) if best_score is not None else float("nan"),
    }
    return Fitted(module, datamodule, training, loggers)


def fit_and_evaluate(config: TrainConfig, rundir: RunDir, checkpoint: str | None, *, progress: bool,
                     backbone: torch.nn.Module | None = None) -> dict[str, float] | None:
    """Fit, then evaluate and save (rank 0); the run's metrics, or None on a DDP process of rank > 0."""
    fitted = fit(config, rundir, checkpoint, progress=progress, backbone=backbone)
    if fitted is None:
        return None
    metrics = evaluate_and_save(fitted.module, fitted.datamodule, config, rundir, fitted.training)
    tracking.log_final_metrics(fitted.loggers, config, metrics, step=int(fitted.training["steps"]))
    return metrics
