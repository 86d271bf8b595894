"""``train(config)``: one run, from a config to a finished run directory and index row.

    config ─► run directory + index row ("running") ─► data, backbone, head ─► Lightning fit
           ─► embeddings of the train/test splits ─► metrics.json, embeddings.npz, plots/ ─► "finished"

Checkpoints are written every epoch (atomically); ``train(resume=RUN_DIR)`` continues a killed run
from its last checkpoint and, because every epoch re-seeds from (seed, epoch), reaches the same final
metrics as an uninterrupted run. A run that raises is marked "failed", one that is interrupted
"interrupted" — never left looking finished.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from featspace import heads
from featspace.io import read_json, write_json, write_text
from featspace.train.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from featspace.train.config import TrainConfig
from featspace.train.evaluate import evaluate_model, extract, make_plots, save_embeddings
from featspace.train.history import HistoryWriter
from featspace.train.module import FeatureModule
from featspace.train.runs import DEFAULT_ROOT, RunIndex, new_run_dir

__all__ = ["RunResult", "train", "evaluate_run", "build_parts", "load_trained", "read_config"]


@dataclass
class RunResult:
    run_id: str
    path: Path
    metrics: dict[str, float]
    plots: list[Path]


def read_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config saved with a run."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a featspace run directory (no config.yaml)")
    with open(path, encoding="utf-8") as handle:
        return TrainConfig.from_dict(yaml.safe_load(handle) or {})


def build_parts(config: TrainConfig) -> tuple[Any, torch.nn.Module, heads.Head]:
    """The data module, backbone and head a config describes."""
    from featspace import data, models

    bundle = data.load(config.dataset, data_dir=config.data_dir, download=config.download)
    datamodule = data.DataModule(bundle, batch_size=config.batch_size, val_fraction=config.val_fraction,
                                 seed=config.seed, augment=config.augment, num_workers=config.num_workers,
                                 episode_ways=config.episode_ways, episode_shots=config.episode_shots)
    backbone = models.build_backbone(config.backbone, in_channels=bundle.in_channels,
                                     embedding_dim=config.embedding_dim, image_size=bundle.image_size[0],
                                     **config.backbone_params)
    head = heads.build(config.head, backbone.embedding_dim, bundle.num_classes, **config.head_params)
    return datamodule, backbone, head


def _uses_cuda(config: TrainConfig) -> bool:
    return config.accelerator in ("gpu", "cuda") or (config.accelerator == "auto" and torch.cuda.is_available())


def _several_processes(config: TrainConfig) -> bool:
    devices = config.devices
    many = str(devices) == "-1" or (str(devices).isdigit() and int(devices) > 1) or "," in str(devices)
    return many or config.num_nodes > 1


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


RUN_DIR_ENV = "FEATSPACE_RUN_DIR"


def launch_rank() -> int:
    """This process's global rank as the launcher set it before any process group exists: 0 for the
    process a user started; > 0 for the processes Lightning's DDP launcher starts (LOCAL_RANK), torchrun
    (RANK), other nodes (NODE_RANK) and SLURM tasks (SLURM_PROCID)."""
    for key in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        value = os.environ.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


def train(config: TrainConfig | None = None, *, root: str | Path = DEFAULT_ROOT, resume: str | Path | None = None,
          run_dir: str | Path | None = None, suite: str | None = None, cell: str | None = None,
          progress: bool = True, plots: bool = True) -> RunResult:
    """Train and evaluate one run; returns its id, directory, metrics and plot paths.

    ``run_dir`` names the run directory instead of a fresh one under ``root``; multi-node launches
    (torchrun, SLURM) pass the same ``run_dir`` to every process so that all of them agree on it. Only
    rank 0 writes the run directory, the index row, the metrics and the plots; other ranks train.
    """
    _quiet_lightning()
    if launch_rank() > 0:
        return _train_non_zero_rank(config, resume=resume, run_dir=run_dir, progress=progress)
    if resume is not None:
        run_dir = Path(resume)
        config = read_config(run_dir)
        run_id = run_dir.name
        index = RunIndex(run_dir.parent)
        if index.get(run_id) is None:
            index.start(run_id, run_dir, config.to_dict(), suite=suite, cell=cell)
        index.resume(run_id)
        last = run_dir / "checkpoints" / "last.ckpt"
        ckpt_path = str(last) if last.is_file() else None
    else:
        if config is None:
            raise ValueError("train() needs a config or a run directory to resume")
        config.validate()
        if run_dir is not None:
            run_dir = Path(run_dir)
            if (run_dir / "config.yaml").exists():
                raise ValueError(f"{run_dir} already holds a run; resume it with --resume {run_dir} "
                                 "or choose another directory")
            run_dir.mkdir(parents=True, exist_ok=True)
            run_id = run_dir.name
            index = RunIndex(run_dir.parent)
        else:
            index = RunIndex(root)
            run_id, run_dir = new_run_dir(root, prefix=f"{config.head}-{config.dataset}-")
        write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        index.start(run_id, run_dir, config.to_dict(), suite=suite, cell=cell)
        ckpt_path = None

    # processes that Lightning's DDP launcher starts re-run this command; they find the run here
    os.environ[RUN_DIR_ENV] = str(Path(run_dir).resolve())
    try:
        result = _fit_and_evaluate(config, run_id, run_dir, ckpt_path, progress=progress, plots=plots)
    except (KeyboardInterrupt, SystemExit):
        index.mark(run_id, "interrupted", "interrupted by the user or a signal")
        raise
    except BaseException as err:
        index.mark(run_id, "failed", f"{type(err).__name__}: {err}")
        raise
    if result is None:  # a non-zero DDP rank: rank 0 owns the index row
        return RunResult(run_id, run_dir, {}, [])
    index.finish(run_id, result.metrics)
    return result


def _train_non_zero_rank(config: TrainConfig | None, *, resume: str | Path | None, run_dir: str | Path | None,
                         progress: bool) -> RunResult:
    """A DDP process of rank > 0: trains in the run directory rank 0 owns, writes nothing of its own."""
    shared = resume or run_dir or os.environ.get(RUN_DIR_ENV)
    if shared is None:
        raise ValueError("this process has a non-zero rank but no run directory: pass the same --run-dir to "
                         "every process (torchrun, SLURM, several nodes)")
    shared = Path(shared)
    if resume is not None:
        config = read_config(shared)
        last = shared / "checkpoints" / "last.ckpt"
        ckpt_path = str(last) if last.is_file() else None
    else:
        if config is None:
            raise ValueError("train() needs a config or a run directory to resume")
        ckpt_path = None
    _fit_and_evaluate(config, shared.name, shared, ckpt_path, progress=False, plots=False)
    return RunResult(shared.name, shared, {}, [])


def checkpoint_callbacks(directory: Path, has_val: bool) -> tuple[ModelCheckpoint, ModelCheckpoint | None]:
    """``last.ckpt`` after every epoch (what ``--resume`` and ``featspace eval`` read) and, with a validation
    split, ``best.ckpt`` at the lowest validation loss.

    Two callbacks, not one with ``save_last=True``: since Lightning 2.6 a monitored ModelCheckpoint writes its
    ``last.ckpt`` only in epochs where the top-k checkpoint was saved too, so after a final epoch that did not
    improve the validation loss ``last.ckpt`` held an older epoch's weights."""
    last = ModelCheckpoint(dirpath=directory, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                           save_last=False, enable_version_counter=False)
    if not has_val:
        return last, None
    best = ModelCheckpoint(dirpath=directory, filename="best", monitor="val_loss", mode="min", save_top_k=1,
                           every_n_epochs=1, save_last=False, enable_version_counter=False)
    return last, best


def _fit_and_evaluate(config: TrainConfig, run_id: str, run_dir: Path, ckpt_path: str | None, *,
                      progress: bool, plots: bool) -> RunResult | None:
    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule, backbone, head = build_parts(config)
    datamodule.setup("fit")
    steps_per_epoch = max(1, math.ceil(len(datamodule.train_dataloader())))
    module = FeatureModule(backbone, head, config, steps_per_epoch)

    has_val = config.val_fraction > 0
    last_checkpoint, best_checkpoint = checkpoint_callbacks(run_dir / "checkpoints", has_val)
    # best before last: Lightning runs checkpoint callbacks in list order, and last.ckpt (what --resume reads)
    # must hold the best-score state as updated by this epoch, or a resumed run could overwrite best.ckpt
    # with worse weights
    callbacks: list[L.Callback] = [c for c in (best_checkpoint, last_checkpoint) if c is not None]
    callbacks.append(HistoryWriter(run_dir / "history.csv"))
    if config.early_stopping_patience and has_val:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience, mode="min"))
    # version=None: a resumed run logs to version_1, version_2, ... instead of overwriting version_0
    loggers: list[Any] = [L.pytorch.loggers.CSVLogger(run_dir, name="logs", version=None)]
    try:
        loggers.append(L.pytorch.loggers.TensorBoardLogger(run_dir, name="tensorboard", version=None))
    except ModuleNotFoundError:  # tensorboard is a dependency, but a trimmed install should still train
        pass
    trainer = L.Trainer(
        max_epochs=-1 if config.max_steps else config.max_epochs,
        max_steps=config.max_steps or -1,
        accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
        strategy=config.strategy, precision=config.precision, deterministic=config.deterministic,
        callbacks=callbacks, logger=loggers, default_root_dir=run_dir,
        plugins=[AtomicCheckpointIO()], enable_progress_bar=progress, enable_model_summary=False,
        sync_batchnorm=config.sync_batchnorm and _uses_cuda(config) and _several_processes(config),
        gradient_clip_val=config.gradient_clip or None, log_every_n_steps=max(1, min(50, steps_per_epoch)),
        limit_val_batches=1.0 if has_val else 0, num_sanity_val_steps=0,
    )
    started = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted")
    train_seconds = time.time() - started
    if not trainer.is_global_zero:
        return None

    if config.early_stopping_patience and best_checkpoint is not None and best_checkpoint.best_model_path:
        # the LACE recipe: evaluate the weights with the best validation loss, not the last ones
        state = load_checkpoint(best_checkpoint.best_model_path)["state_dict"]
        module.load_state_dict(state)
    writer = next(c for c in callbacks if isinstance(c, HistoryWriter))
    last = writer.rows[-1] if writer.rows else {}
    training = {
        "epochs": float(trainer.current_epoch), "steps": float(trainer.global_step),
        "train_seconds": train_seconds, "final_train_acc": float(last.get("train_acc", float("nan"))),
        "best_val_loss": float(best_checkpoint.best_model_score)
        if best_checkpoint is not None and best_checkpoint.best_model_score is not None else float("nan"),
    }
    metrics, written = _evaluate_and_save(module, datamodule, config, run_dir, training, plots=plots)
    return RunResult(run_id, run_dir, metrics, written)


_TRAINING_KEYS = ("epochs", "steps", "train_seconds", "final_train_acc", "best_val_loss")


def _evaluate_and_save(module: FeatureModule, datamodule: Any, config: TrainConfig, run_dir: Path,
                       training: dict[str, float], *, plots: bool) -> tuple[dict[str, float], list[Path]]:
    """Embeddings of the train and test splits, every metric, embeddings.npz, metrics.json and plots."""
    device = next(module.parameters()).device
    train_split = extract(module.backbone, module.head, datamodule.train_eval_dataloader(), device)
    test_split = extract(module.backbone, module.head, datamodule.test_dataloader(), device)
    metrics = evaluate_model(module.head, train_split, test_split, seed=config.seed,
                             max_samples=config.eval_max_samples)
    metrics.update(training)
    save_embeddings(run_dir / "embeddings.npz", module.head, train_split, test_split)
    write_json(run_dir / "metrics.json", metrics)
    written: list[Path] = []
    if plots:
        history = torch.stack(module.centroid_history) if module.centroid_history else None
        written = make_plots(run_dir / "plots", head=module.head, test=test_split,
                             history_csv=run_dir / "history.csv", centroid_history=history,
                             centroid_source=module.centroid_source,
                             class_names=list(datamodule.class_names), tsne=config.tsne, seed=config.seed,
                             title=f"{config.head} / {config.dataset}")
    return metrics, written


def load_trained(run_dir: str | Path, config: TrainConfig | None = None) -> tuple[FeatureModule, Any, Path]:
    """The trained model of a run: (module with its weights, the run's data module, the checkpoint read).

    The weights are those a run is evaluated with: ``best.ckpt`` (lowest validation loss) when the run
    used early stopping, as the LACE recipe does, else ``last.ckpt``."""
    run_dir = Path(run_dir)
    config = config or read_config(run_dir)
    checkpoints = run_dir / "checkpoints"
    chosen = checkpoints / ("best.ckpt" if config.early_stopping_patience else "last.ckpt")
    if not chosen.is_file():
        chosen = checkpoints / "last.ckpt"
    state = load_checkpoint(chosen)
    datamodule, backbone, head = build_parts(config)
    datamodule.setup("fit")
    module = FeatureModule(backbone, head, config, steps_per_epoch=1)
    module.load_state_dict(state["state_dict"])
    module.on_load_checkpoint(state)
    return module, datamodule, chosen


def evaluate_run(run_dir: str | Path, *, plots: bool = True) -> RunResult:
    """Re-evaluate a finished run from its config and checkpoint (``featspace eval RUN_DIR``)."""
    _quiet_lightning()
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    module, datamodule, _ = load_trained(run_dir, config)
    previous: dict[str, float] = {}
    if (run_dir / "metrics.json").is_file():
        # training facts and few-shot results are not recomputed here: keep them
        previous = {k: v for k, v in read_json(run_dir / "metrics.json").items()
                    if k in _TRAINING_KEYS or k.startswith("fewshot_")}
    metrics, written = _evaluate_and_save(module, datamodule, config, run_dir, previous, plots=plots)
    index = RunIndex(run_dir.parent)
    if index.get(run_dir.name) is not None:
        index.update_metrics(run_dir.name, metrics)
    return RunResult(run_dir.name, run_dir, metrics, written)
