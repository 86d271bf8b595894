"""Seconds per training epoch of featspace's trainer against a plain PyTorch loop, measured in the same run.

    .venv/bin/python benchmarks/train_loop.py                       # both setups, CPU (and CUDA when present)
    .venv/bin/python benchmarks/train_loop.py --setups small_cnn --epochs 3 --repeats 3

Three loops over the same backbone, head, optimiser, learning-rate schedule and batches (featspace's own data
module, so augmentation and shuffling are identical):

- ``featspace``: ``featspace.train.fit.fit`` — the Lightning trainer exactly as ``featspace train`` runs it, with
  its checkpoints, history, loggers and per-step logging (validation off on every side: ``val_fraction=0``);
- ``plain``: the same modules stepped by hand (``zero_grad``, ``backward``, ``step``, scheduler) — what the
  trainer's bookkeeping costs is the ratio of the two;
- ``plain_linear``: the same backbone under a linear layer + cross-entropy: the floor any head pays.

Setups: ``small_cnn`` (28×28 grayscale, the papers' Fashion-MNIST scale, ICV head as in the icv-fashion recipe)
and ``resnet18_cifar`` (a few hundred 32×32 RGB images, softmax head). The images are synthetic uint8 noise
registered as a dataset for the run; only the time matters. Each loop runs ``--epochs`` epochs per repeat and
the median over ``--repeats`` (loops interleaved, so load on the machine hits all of them alike) is reported.
Options users expect are measured as extra featspace rows where the config has them (``--options``).

Prints a table and writes JSON (``--out``, default ``benchmarks/results/train_loop.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from featspace import __version__, data
from featspace.config import TrainConfig, apply_overrides
from featspace.io import write_json
from featspace.rundir import RunDir
from featspace.train import fit as fitting
from featspace.train.module import FeatureModule
from featspace.train.parts import build_parts

#: name → (dataset shape (N, C, H, W), classes, config overrides)
SETUPS = {
    "small_cnn": ((4096, 1, 28, 28), 10, {"backbone": "small_cnn", "embedding_dim": 4, "head": "icv",
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


def time_featspace(config: TrainConfig) -> float:
    """Seconds of ``trainer.fit`` for the config's epochs, through featspace's own fit (no evaluation)."""
    with tempfile.TemporaryDirectory() as tmp:
        rundir = RunDir(Path(tmp) / "run")
        rundir.path.mkdir()
        rundir.checkpoints.mkdir(parents=True, exist_ok=True)
        fitted = fitting.fit(config, rundir, None, progress=False)
        return float(fitted.training["train_seconds"])


def time_plain(config: TrainConfig, *, linear: bool) -> float:
    """Seconds of a hand-written loop over the same parts, optimiser, schedule and batches."""
    torch.manual_seed(config.seed)
    datamodule, backbone, head = build_parts(config)
    datamodule.setup("fit")
    device = torch.device("cuda" if config.accelerator == "gpu" else "cpu")
    loader = datamodule.train_dataloader()
    module = FeatureModule(backbone, head, config, steps_per_epoch=len(loader))
    if linear:
        module.head = _LinearCE(backbone.embedding_dim, datamodule.num_classes)
    module.to(device).train()
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    started = time.perf_counter()
    for epoch in range(config.max_epochs):
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
    return time.perf_counter() - started


class _LinearCE(nn.Module):
    """The floor: a linear classifier and cross-entropy on the embedding."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, c)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(x), y)


def _known_options() -> dict[str, dict]:
    """Trainer options measured as extra rows, where TrainConfig has the field (and the device supports it)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    options = {"compile": {"compile": True}, "channels_last": {"channels_last": True}}
    return {name: extra for name, extra in options.items() if set(extra) <= fields}


def run(setups: list[str], device: str, epochs: int, repeats: int, options: list[str]) -> list[dict]:
    rows = []
    extras = _known_options()
    for setup in setups:
        loops = {"featspace": lambda c: time_featspace(c), "plain": lambda c: time_plain(c, linear=False),
                 "plain_linear": lambda c: time_plain(c, linear=True)}
        configs = {name: _config(setup, epochs, device, {}) for name in loops}
        for option in options:
            if option in extras:
                loops[f"featspace+{option}"] = time_featspace
                configs[f"featspace+{option}"] = _config(setup, epochs, device, extras[option])
        # one untimed epoch of each, so the first timed repeat pays no one-time cost (imports, allocator)
        for name, loop in loops.items():
            loop(dataclasses.replace(configs[name], max_epochs=1))
        seconds: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(repeats):
            for name, loop in loops.items():
                seconds[name].append(loop(configs[name]) / epochs)
        plain = statistics.median(seconds["plain"])
        for name, values in seconds.items():
            median = statistics.median(values)
            rows.append({"setup": setup, "device": device, "loop": name, "seconds_per_epoch": median,
                         "ratio_to_plain": median / plain, "repeats": values,
                         "images_per_epoch": len(range(SETUPS[setup][0][0]))})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'setup':<16} {'device':<6} {'loop':<26} {'s/epoch':>9} {'× plain':>8}")
    for row in rows:
        print(f"{row['setup']:<16} {row['device']:<6} {row['loop']:<26} {row['seconds_per_epoch']:>9.3f} "
              f"{row['ratio_to_plain']:>8.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed repeat (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per loop (default 3; median)")
    parser.add_argument("--options", nargs="*", default=["compile", "channels_last"],
                        help="trainer options measured as extra rows where the config has them")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_loop.json")
    args = parser.parse_args(argv)
    fitting.quiet_lightning()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    rows = []
    for device in devices:
        rows += run(args.setups, device, args.epochs, args.repeats, args.options)
    print_table(rows)
    meta = {"torch": torch.__version__, "featspace": __version__, "machine": platform.machine(),
            "processor": platform.processor(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs}
    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
