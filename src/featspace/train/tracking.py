"""Experiment tracking: the Lightning loggers a run's ``loggers`` field names, its hyperparameters and its final
metrics in them.

    config.loggers ─► CSVLogger (RUN/logs), TensorBoardLogger (RUN/tensorboard), WandbLogger, MLFlowLogger
    fit start ─► every logger: the flat config (``hyperparameters``); the learning rate per step
                 (Lightning's LearningRateMonitor, added by ``featspace.train.fit``)
    after the evaluation ─► every logger: metrics.json's numbers as ``final/<key>``; TensorBoard also as the
                 metrics of its HParams entry, so runs can be compared on them in one table

Weights & Biases and MLflow are optional extras (``pip install 'featspace[wandb]'`` / ``'featspace[mlflow]'``) and
are configured as their own tools are: ``WANDB_MODE=offline``, ``WANDB_PROJECT`` (default ``featspace``),
``MLFLOW_TRACKING_URI`` (default ``sqlite:///<run root>/mlflow.db``), ``MLFLOW_EXPERIMENT_NAME`` (default
``featspace``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from lightning.pytorch import loggers as pl_loggers
from lightning.pytorch.loggers.wandb import WandbLogger

from featspace.config import TrainConfig
from featspace.rundir import RunDir

__all__ = ["FINAL_PREFIX", "build_loggers", "hyperparameters", "log_final_metrics", "require_loggers"]

#: the prefix of the final metrics in the loggers (``final/accuracy``), apart from the per-epoch curves
FINAL_PREFIX = "final/"

#: logger -> (the module it needs, the featspace extra that installs it)
_NEEDS = {"tensorboard": ("tensorboard", "train"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def require_loggers(config: TrainConfig) -> None:
    """A one-line ValueError for a logger of ``config.loggers`` whose package is not installed, before a run
    directory is claimed for it."""
    for name in config.loggers:
        if name not in _NEEDS:
            continue
        module, extra = _NEEDS[name]
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"loggers: {name} needs the {module} package, which is not installed: "
                             f"pip install 'featspace[{extra}]' (or leave {name} out of loggers)")


def build_loggers(config: TrainConfig, rundir: RunDir) -> list[Any]:
    """The Lightning loggers of ``config.loggers``, in that order, writing beside or about ``rundir``.

    ``version=None``: a resumed run logs to version_1, version_2, ... of the CSV and TensorBoard logs instead of
    overwriting version_0."""
    require_loggers(config)
    loggers: list[Any] = []
    for name in config.loggers:
        if name == "csv":
            loggers.append(pl_loggers.CSVLogger(rundir.path, name="logs", version=None))
        elif name == "tensorboard":
            # no placeholder hp_metric: the HParams entry is written once the real metrics are known
            loggers.append(pl_loggers.TensorBoardLogger(rundir.path, name="tensorboard", version=None,
                                                        default_hp_metric=False))
        else:
            try:
                loggers.append(_tracker(name, rundir))
            except Exception as err:  # noqa: BLE001 (a tracker's own errors: a bad URI, a store it refuses)
                first = " ".join(str(err).split())[:300]
                raise ValueError(f"loggers: {name} could not start ({type(err).__name__}: {first})") from None
    return loggers


def _tracker(name: str, rundir: RunDir) -> Any:
    if name == "wandb":
        return pl_loggers.WandbLogger(name=rundir.name, save_dir=str(rundir.path),
                                      project=os.environ.get("WANDB_PROJECT", "featspace"))
    # one database beside the run index for every run under the root (MLflow 3 refuses a file store)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{rundir.path.parent.resolve() / 'mlflow.db'}"
    return pl_loggers.MLFlowLogger(experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "featspace"),
                                   run_name=rundir.name, tracking_uri=uri)


def _flat(prefix: str, values: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flat(f"{name}.", value, out)
            if not value:
                out[name] = "{}"
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:  # None, lists: as JSON text, which every tracker stores
            out[name] = json.dumps(value)


def hyperparameters(config: TrainConfig) -> dict[str, Any]:
    """The config as one flat mapping of scalars: dot keys for the nested mappings (``head_params.lam``, the
    keys suites and overrides use), lists and None as JSON text (``milestones: "[30, 60]"``)."""
    out: dict[str, Any] = {}
    _flat("", config.to_dict(), out)
    return out


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of metrics.json (trackers reject or mangle NaN and text)."""
    return {f"{FINAL_PREFIX}{key}": float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def log_final_metrics(loggers: Iterable[Any], config: TrainConfig, metrics: Mapping[str, Any], step: int) -> None:
    """Record a finished run's metrics (metrics.json, after the evaluation) at optimiser step ``step``: as the
    HParams metrics in TensorBoard, as ``final/<key>`` values in every other logger; then flush and close them
    (a W&B run is finished)."""
    final = _numbers(metrics)
    for logger in loggers:
        if isinstance(logger, pl_loggers.TensorBoardLogger):
            logger.log_hyperparams(hyperparameters(config), metrics=final, step=step)
        else:
            logger.log_metrics(final, step=step)
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            # Lightning leaves the W&B run open until the process ends; a bench trains many runs in one process
            logger.experiment.finish()
