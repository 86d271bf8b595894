"""Seconds per training epoch of featspace's trainer against a plain PyTorch loop, measured in the same run.

    .venv/bin/python benchmarks/train_loop.py                       # both setups, CPU (and CUDA when present)
    .venv/bin/python benchmarks/train_loop.py --setups small_cnn --epochs 3 --repeats 3

Three loops over the same backbone, head, optimiser, learning-rate schedule and batches (featspace's own data
module, so augmentation and shuffling are identical):

- ``featspace``: ``featspace.train.fit.fit`` — the Lightning trainer exactly as ``featspace train`` runs it, with
  its checkpoints, history, loggers and per-step logging (validation off on every side: ``val_fraction=0``);
- ``plain``: the same modules stepped by hand (``zero_grad``, ``backward``, ``step``, scheduler) — what the
  trainer's bookkeeping costs is the ratio of the two;
- ``plain_linear``: the same backbone under a linear layer + cross-entropy: the floor any head pays;
- ``lightning_bare``: the same modules, optimiser and schedule in the smallest LightningModule (``training_step``
  returns the head's loss; no logger, checkpoint, callback or progress bar): Lightning's own per-step loop, the
  floor of any trainer built on it. featspace against this row is what featspace's bookkeeping costs.

Setups: ``small_cnn`` (28×28 grayscale, the papers' Fashion-MNIST scale, ICV head as in the icv-fashion recipe)
and ``resnet18_cifar`` (a few hundred 32×32 RGB images, softmax head). The images are synthetic uint8 noise
registered as a dataset for the run; only the time matters (the small-CNN set has icv-fashion's 54,000 training
images). Each loop runs ``--epochs`` epochs per repeat; reported is the median of the steady epochs (every epoch
after a fit's first) over ``--repeats`` interleaved repeats, and the first epoch's time apart (it pays
``torch.compile``'s compilation, the allocator's warm-up).
Options users expect are extra featspace rows (``--options``): ``compile: true``, ``channels_last: true`` and, on
CUDA, ``precision: bf16-mixed``; on CUDA every featspace row already uses pinned memory with non-blocking copies
(the data module pins when CUDA is present; Lightning copies non-blocking).

Prints a table and writes JSON (``--out``, default ``benchmarks/results/train_loop.json``). A run of some setups
keeps the rows of the others already in ``--out``; every row carries the date it was measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from featspace import __version__, data
from featspace.config import TrainConfig, apply_overrides
from featspace.data.module import DataModule
from featspace.io import write_json
from featspace.rundir import RunDir
from featspace.train import fit as fitting
from featspace.train.history import read_history
from featspace.train.module import FeatureModule
from featspace.train.parts import build_parts

#: name → (dataset shape (N, C, H, W), classes, config overrides)
SETUPS = {
    "small_cnn": ((54000, 1, 28, 28), 10, {"backbone": "small_cnn", "embedding_dim": 4, "head": "icv",
                                          "batch_size": 256, "augment": False}),
    "resnet18_cifar": ((512, 3, 32, 32), 10, {"backbone": "resnet18_cifar", "embedding_dim": None,
                                              "head": "softmax", "batch_size": 64, "augment": True,
                                              "optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4}),
}


def _register(name: str, shape: tuple[int, int, int, int], classes: int, augment: str) -> None:
    """A dataset of uint8 noise with balanced labels, registered under ``name`` (once per process)."""
    if name in data.names():
        return
    generator = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    train = (torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator), torch.arange(n) % classes)
    test = (train[0][: n // 8].clone(), train[1][: n // 8].clone())

    @data.DATASETS.register(name, description="benchmark noise")
    def _load(root: Path) -> data.DatasetBundle:
        return data.datasets._bundle(name, train, test, [str(k) for k in range(classes)], augment=augment,
                                     source="synthetic")


def _config(setup: str, epochs: int, device: str, extra: dict) -> TrainConfig:
    shape, classes, overrides = SETUPS[setup]
    dataset = f"bench_{setup}"
    _register(dataset, shape, classes, "crop_flip" if shape[1] == 3 else "none")
    config = TrainConfig(dataset=dataset, max_epochs=epochs, val_fraction=0.0, tsne=False,
                         accelerator="gpu" if device == "cuda" else "cpu")
    return TrainConfig.from_dict(apply_overrides(config.to_dict(), {**overrides, **extra}))


def time_featspace(config: TrainConfig) -> list[float]:
    """Seconds of each epoch through featspace's own fit (no evaluation), from the run's ``history.csv``."""
    with tempfile.TemporaryDirectory() as tmp:
        rundir = RunDir(Path(tmp) / "run")
        rundir.path.mkdir()
        rundir.checkpoints.mkdir(parents=True, exist_ok=True)
        fitting.fit(config, rundir, None, progress=False)
        return [row["epoch_seconds"] for row in read_history(rundir.history)]


def _parts(config: TrainConfig) -> tuple[DataModule, DataLoader, FeatureModule]:
    """The data module, its training loader and a FeatureModule over the config's parts, as ``fit`` builds
    them (same seed, so the same initial weights), for the loops that step them outside featspace's fit."""
    torch.manual_seed(config.seed)
    datamodule, backbone, head = build_parts(config)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    return datamodule, loader, FeatureModule(backbone, head, config, steps_per_epoch=len(loader))


def time_plain(config: TrainConfig, *, linear: bool) -> list[float]:
    """Seconds of a hand-written loop over the same parts, optimiser, schedule and batches."""
    datamodule, loader, module = _parts(config)
    device = torch.device("cuda" if config.accelerator == "gpu" else "cpu")
    if linear:
        module.head = _LinearCE(module.backbone.embedding_dim, datamodule.num_classes)
    module.to(device).train()
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    seconds = []
    for epoch in range(config.max_epochs):
        started = time.perf_counter()
        datamodule.set_epoch(epoch)
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = module.head(module.backbone(images), labels)
            loss = loss if linear else loss.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds


class _Bare(L.LightningModule):
    """The smallest LightningModule over featspace's parts: the step returns the head's loss, nothing else."""

    def __init__(self, module: FeatureModule) -> None:
        super().__init__()
        self.backbone, self.head = module.backbone, module.head
        self._optimizers = module.configure_optimizers()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return self.head(self.backbone(images), labels).loss

    def configure_optimizers(self) -> dict:
        return self._optimizers


class _EpochClock(L.Callback):
    """Seconds of each training epoch, as featspace's history measures them (start to end of the epoch)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.seconds, self._started = cuda, [], 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._started)


def time_lightning_bare(config: TrainConfig) -> list[float]:
    """Seconds of each epoch of a bare Lightning fit over the same parts, optimiser, schedule and batches."""
    _, loader, module = _parts(config)
    clock = _EpochClock(config.accelerator == "gpu")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(max_epochs=config.max_epochs, accelerator=config.accelerator, devices=1,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[clock], limit_val_batches=0,
                            num_sanity_val_steps=0, default_root_dir=tmp)
        trainer.fit(_Bare(module), train_dataloaders=loader)
    return clock.seconds


class _LinearCE(nn.Module):
    """The floor: a linear classifier and cross-entropy on the embedding."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, c)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(x), y)


def _options(device: str) -> dict[str, dict]:
    """Trainer options measured as extra featspace rows: config overrides by name (bf16-mixed on CUDA only)."""
    options = {"compile": {"compile": True}, "channels_last": {"channels_last": True}}
    if device == "cuda":
        options["bf16-mixed"] = {"precision": "bf16-mixed"}
    return options


def run(setups: list[str], device: str, epochs: int, repeats: int, options: list[str]) -> list[dict]:
    rows = []
    extras = _options(device)
    for setup in setups:
        loops = {"featspace": lambda c: time_featspace(c), "plain": lambda c: time_plain(c, linear=False),
                 "plain_linear": lambda c: time_plain(c, linear=True), "lightning_bare": time_lightning_bare}
        configs = {name: _config(setup, epochs, device, {}) for name in loops}
        for option in options:
            if option in extras:
                loops[f"featspace+{option}"] = time_featspace
                configs[f"featspace+{option}"] = _config(setup, epochs, device, extras[option])
        # interleaved, so load on the machine hits every loop alike; the first epoch of each fit (compilation,
        # allocator warm-up, worker start) is reported apart from the steady epochs after it
        first: dict[str, list[float]] = {name: [] for name in loops}
        steady: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(repeats):
            for name, loop in loops.items():
                epochs_seconds = loop(configs[name])
                first[name].append(epochs_seconds[0])
                steady[name].extend(epochs_seconds[1:])
        plain = statistics.median(steady["plain"])
        for name in loops:
            median = statistics.median(steady[name])
            rows.append({"setup": setup, "device": device, "loop": name, "seconds_per_epoch": median,
                         "ratio_to_plain": median / plain, "first_epoch_seconds": statistics.median(first[name]),
                         "steady_epochs": steady[name], "images_per_epoch": SETUPS[setup][0][0]})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'setup':<16} {'device':<6} {'loop':<26} {'s/epoch':>9} {'× plain':>8} {'1st epoch s':>12}")
    for row in rows:
        print(f"{row['setup']:<16} {row['device']:<6} {row['loop']:<26} {row['seconds_per_epoch']:>9.3f} "
              f"{row['ratio_to_plain']:>8.3f} {row['first_epoch_seconds']:>12.3f}")


def _kept_rows(out: Path, rows: list[dict]) -> list[dict]:
    """The rows of an earlier ``out`` for the (setup, device) pairs this run did not measure, each with its
    own date: rerunning one setup keeps the others' measurements. Ratios never mix runs — every row's
    ``ratio_to_plain`` is against the plain loop of its own run."""
    if not out.exists():
        return []
    earlier = json.loads(out.read_text(encoding="utf-8"))
    measured = {(row["setup"], row["device"]) for row in rows}
    return [{"date": earlier.get("meta", {}).get("date"), **row} for row in earlier.get("rows", [])
            if (row["setup"], row["device"]) not in measured]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (default 3; at least 2)")
    parser.add_argument("--repeats", type=int, default=2, help="fits per loop (default 2)")
    parser.add_argument("--options", nargs="*", default=["compile", "channels_last", "bf16-mixed"],
                        help="trainer options measured as extra featspace rows (bf16-mixed on CUDA only)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_loop.json")
    args = parser.parse_args(argv)
    fitting.quiet_lightning()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    date = time.strftime("%Y-%m-%d")
    rows = []
    for device in devices:
        rows += [{**row, "date": date} for row in run(args.setups, device, args.epochs, args.repeats, args.options)]
    print_table(rows)
    meta = {"torch": torch.__version__, "featspace": __version__, "machine": platform.machine(),
            "processor": platform.processor(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": date, "epochs": args.epochs}
    write_json(args.out, {"meta": meta, "rows": _kept_rows(args.out, rows) + rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
