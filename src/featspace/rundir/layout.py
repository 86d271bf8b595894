"""The files of one run directory: their names, and the one place that reads and writes each.

    <root>/<run_id>/
        config.yaml            the resolved config (written once, when the directory is claimed)
        history.csv            per-epoch loss, accuracy, every loss term, learning rate
        checkpoints/last.ckpt  after every epoch (what --resume and eval read)
        checkpoints/best.ckpt  lowest validation loss (runs with a validation split)
        metrics.json           every metric of the finished run
        embeddings.npz         test embeddings, labels, scores, head feature space, training class means,
                               learned centroids, class names
        pair_angles.json       the positive/negative pair-angle histograms behind D_EM and D_KL
        centroid_history.npz   the centroids (or class means) after every epoch
        fewshot.json           few-shot results, when evaluated
        model.json             what inference needs besides the weights: class names, channels, image size,
                               normalisation, resizing (``featspace.train.load_run`` never touches the training data)
        skipped_files.txt      image-folder files left out as unreadable (``skip_corrupt``): path<TAB>reason
        plots/                 the figures, drawn by ``featspace.report.run_figures`` from the files above

Every writer here goes through ``featspace.io`` (temporary file, then rename), so a killed run never leaves a
half-written file. ``claim`` creates a run directory atomically: of two processes given the same directory at
the same instant, exactly one gets it. Readers never execute anything from a file: YAML is safe-loaded,
arrays are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from featspace.config import TrainConfig
from featspace.io import atomic_path, read_json, read_yaml, write_json, write_text

__all__ = [
    "BEST_CHECKPOINT",
    "CENTROID_HISTORY",
    "CHECKPOINTS",
    "CONFIG",
    "EMBEDDINGS",
    "FEWSHOT",
    "HISTORY",
    "LAST_CHECKPOINT",
    "METRICS",
    "MODEL",
    "PAIR_ANGLES",
    "PLOTS",
    "RunDir",
    "RunDirTaken",
    "SKIPPED_FILES",
]

CONFIG = "config.yaml"
HISTORY = "history.csv"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
METRICS = "metrics.json"
EMBEDDINGS = "embeddings.npz"
PAIR_ANGLES = "pair_angles.json"
CENTROID_HISTORY = "centroid_history.npz"
FEWSHOT = "fewshot.json"
PLOTS = "plots"
MODEL = "model.json"
SKIPPED_FILES = "skipped_files.txt"


class RunDirTaken(ValueError):
    """The directory already holds a run (or another process claimed it first)."""


@dataclass(frozen=True)
class RunDir:
    """A run directory: the paths of its files and their readers and writers."""

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    # ------------------------------------------------------------------------------------------- paths
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def history(self) -> Path:
        return self.path / HISTORY

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def embeddings(self) -> Path:
        return self.path / EMBEDDINGS

    @property
    def pair_angles(self) -> Path:
        return self.path / PAIR_ANGLES

    @property
    def centroid_history(self) -> Path:
        return self.path / CENTROID_HISTORY

    @property
    def fewshot(self) -> Path:
        return self.path / FEWSHOT

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def skipped_files(self) -> Path:
        return self.path / SKIPPED_FILES

    def is_run(self) -> bool:
        """Whether this directory holds a run (its config)."""
        return self.config_path.is_file()

    def evaluation_checkpoint(self, config: TrainConfig) -> Path:
        """The checkpoint a run is evaluated with: ``best.ckpt`` (lowest validation loss) when it used early
        stopping, as the LACE recipe does, else ``last.ckpt``."""
        if config.early_stopping_patience and self.best_checkpoint.is_file():
            return self.best_checkpoint
        return self.last_checkpoint

    # ----------------------------------------------------------------------------------------- claiming
    def claim(self, config: TrainConfig) -> None:
        """Create the directory (parents too) and its ``config.yaml`` atomically; raises :class:`RunDirTaken`
        when it already holds a run. The config is written to a temporary file and hard-linked into place:
        ``link`` fails when the name exists, so of two processes claiming at once exactly one succeeds, and the
        loser never overwrites the winner's config."""
        self.path.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(config.to_dict(), sort_keys=False)
        fd, tmp = tempfile.mkstemp(prefix=f".{CONFIG}.", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, self.config_path)
            except FileExistsError:
                raise RunDirTaken(f"{self.path} already holds a run; resume it with --resume {self.path} "
                                  "or choose another directory") from None
            except OSError as err:  # a file system without hard links: exclusive create, then write
                if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                self._claim_exclusive(text)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _claim_exclusive(self, text: str) -> None:
        try:
            fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise RunDirTaken(f"{self.path} already holds a run; resume it with --resume {self.path} "
                              "or choose another directory") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    # ------------------------------------------------------------------------------------------ readers
    def read_config(self) -> TrainConfig:
        """The resolved config saved with the run (safe-loaded, every field checked)."""
        return TrainConfig.from_dict(self.read_config_values())

    def read_config_values(self) -> dict[str, Any]:
        """The saved config as a plain mapping, unchecked (a report reads runs of older code versions too)."""
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a featspace run directory (no {CONFIG})")
        values = read_yaml(self.config_path) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{self.config_path} is not a mapping of config fields")
        return values

    def read_metrics(self) -> dict[str, Any] | None:
        """metrics.json, or None when the run has none."""
        return read_json(self.metrics_path) if self.metrics_path.is_file() else None

    def read_fewshot(self) -> dict[str, Any] | None:
        """fewshot.json, or None when it is missing or unreadable (then the evaluation is simply redone)."""
        try:
            report = read_json(self.fewshot)
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    def read_embeddings(self) -> dict[str, np.ndarray]:
        """The arrays of embeddings.npz (no pickled objects: class names are a unicode array)."""
        with np.load(self.embeddings, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}

    def read_model(self) -> dict[str, Any]:
        """model.json; a run trained before it existed is told how to get one."""
        if not self.model.is_file():
            raise FileNotFoundError(f"{self.path} has no {MODEL} (runs write it when they finish; re-evaluate an "
                                    f"older run with `featspace eval {self.path}` to add it)")
        return read_json(self.model)

    def read_pair_angles(self) -> dict[str, Any] | None:
        return read_json(self.pair_angles) if self.pair_angles.is_file() else None

    def read_centroid_history(self) -> tuple[np.ndarray, str] | None:
        """(centroids [E, C, d] after every epoch, their source: "learned" or "class_means"), or None."""
        if not self.centroid_history.is_file():
            return None
        with np.load(self.centroid_history, allow_pickle=False) as arrays:
            return arrays["centroids"], str(arrays["source"])

    # ------------------------------------------------------------------------------------------ writers
    def write_config(self, config: TrainConfig) -> None:
        """Replace the config of a claimed run (atomically): a run extended to more epochs records its new length."""
        if not self.is_run():
            raise FileNotFoundError(f"{self.path} is not a featspace run directory (no {CONFIG})")
        write_text(self.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_path, metrics)

    def write_fewshot(self, report: dict[str, Any]) -> None:
        write_json(self.fewshot, report)

    def write_embeddings(self, arrays: dict[str, np.ndarray]) -> None:
        with atomic_path(self.embeddings, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)

    def write_model(self, info: dict[str, Any]) -> None:
        write_json(self.model, info)

    def write_skipped_files(self, skipped: list[tuple[str, str]]) -> None:
        """``path<TAB>reason`` per line for the files an image folder left out (``skip_corrupt``)."""
        with atomic_path(self.skipped_files, suffix=".txt") as tmp:
            Path(tmp).write_text("".join(f"{path}\t{' '.join(str(reason).split())}\n" for path, reason in skipped),
                                 encoding="utf-8")

    def read_skipped_files(self) -> list[tuple[str, str]]:
        """(path, reason) of the files left out, or [] when none were."""
        if not self.skipped_files.is_file():
            return []
        lines = self.skipped_files.read_text(encoding="utf-8").splitlines()
        return [(path, reason) for path, _, reason in (line.partition("\t") for line in lines if line)]

    def write_pair_angles(self, histogram: dict[str, Any]) -> None:
        write_json(self.pair_angles, histogram)

    def write_centroid_history(self, centroids: np.ndarray, source: str) -> None:
        with atomic_path(self.centroid_history, suffix=".npz") as tmp:
            np.savez_compressed(tmp, centroids=centroids, source=np.array(source))
