"""Per-epoch history of a run, written to ``history.csv`` (atomically) after every epoch.

The rows live in the callback's state, which Lightning saves in every checkpoint, so a resumed run
continues the same file instead of losing or repeating epochs.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import lightning as L

from featspace.io import write_text

__all__ = ["HistoryWriter", "read_history"]

_FIRST = ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "backbone_lr", "epoch_seconds"]


class HistoryWriter(L.Callback):
    """Collects epoch-level metrics (loss, accuracy, every loss part, learning rate, the epoch's wall time in
    seconds) into history.csv."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self._epoch_started: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if key.endswith("_step"):
                continue
            name = key[: -len("_epoch")] if key.endswith("_epoch") else key
            row[name] = float(value)
        if trainer.optimizers:
            # "lr": the head's rate (the config's lr under the schedule); "backbone_lr": the trunk's, when
            # backbone_lr_scale gives it its own (FeatureModule names its parameter groups)
            groups = {g.get("name"): g["lr"] for g in trainer.optimizers[0].param_groups}
            row["lr"] = groups.get("head", trainer.optimizers[0].param_groups[0]["lr"])
            if "trunk" in groups:
                row["backbone_lr"] = groups["trunk"]
        if self._epoch_started is not None:  # the epoch's wall time: its steps and its validation
            row["epoch_seconds"] = time.perf_counter() - self._epoch_started
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        if trainer.is_global_zero:
            write_text(self.path, rows_to_csv(self.rows))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in _FIRST if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in keys})
    return buffer.getvalue()


def read_history(path: str | Path) -> list[dict[str, float]]:
    """history.csv back as a list of dicts of floats (empty cells dropped)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
