"""The training configuration: every hyperparameter of a run in one place, each with its unit.

A run is described by a :class:`TrainConfig`. Recipes (YAML files shipped in ``featspace/recipes``)
give the papers' setups; any field can be overridden with ``key=value`` strings (values parsed as YAML,
so ``lr=1e-3``, ``milestones=[30,60]`` and ``head_params.lam=0.5`` all work). The resolved config is
saved with every run as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "recipe_names", "load_recipe", "apply_overrides", "describe_recipe"]


@dataclass
class TrainConfig:
    """Hyperparameters of one training run. Units are in the comments."""

    # what is trained
    dataset: str = "digits"                 # featspace.data name
    data_dir: str | None = None             # where the dataset files are (None: the loader's defaults)
    download: bool = False                  # fetch the dataset where there is internet
    backbone: str = "small_cnn"             # featspace.models name
    embedding_dim: int | None = 64          # width d of the embedding (None: the backbone's native width)
    backbone_params: dict[str, Any] = field(default_factory=dict)  # backbone options (e.g. small_cnn norm)
    head: str = "softmax"                   # featspace.heads name
    head_params: dict[str, Any] = field(default_factory=dict)  # hyperparameters of the head
    # optimisation
    optimizer: str = "adam"                 # "adam" | "sgd"
    lr: float = 1e-3                        # initial learning rate
    momentum: float = 0.9                   # SGD momentum
    nesterov: bool = False                  # SGD Nesterov momentum
    weight_decay: float = 0.0               # L2 penalty (coupled, as torch.optim applies it)
    head_weight_decay: bool = True          # apply weight decay to the head's parameters too
    schedule: str = "none"                  # "none" | "multistep" | "cosine"
    milestones: list[int] = field(default_factory=list)  # multistep: epochs (or steps, if max_steps) of ×gamma
    gamma: float = 0.1                      # multistep decay factor
    warmup_epochs: int = 0                  # linear warm-up, epochs
    batch_size: int = 256                   # samples per step (per process under DDP)
    episode_ways: int = 0                   # >0: N-way K-shot training batches (few-shot; batch = ways·shots)
    episode_shots: int = 0                  # K of those episodes
    max_epochs: int = 20                    # epochs (ignored when max_steps > 0)
    max_steps: int = 0                      # optimiser steps; 0 = use max_epochs (HASeparator counts iterations)
    early_stopping_patience: int = 0        # epochs without val-loss improvement before stopping; 0 = off
    gradient_clip: float = 0.0              # max gradient norm; 0 = off
    # data
    val_fraction: float = 0.1               # stratified hold-out of the training set (LACE: 10%)
    augment: bool = True                    # the dataset's standard augmentation
    num_workers: int = 0                    # DataLoader workers
    # reproducibility and hardware
    seed: int = 0
    deterministic: bool = False             # torch deterministic algorithms (slower)
    accelerator: str = "auto"               # "cpu" | "gpu" | "auto"
    devices: str | int = 1                  # processes/devices per node
    num_nodes: int = 1
    strategy: str = "auto"                  # "auto" | "ddp" | ...
    precision: str = "32-true"              # Lightning precision; "bf16-mixed" / "16-mixed" on CUDA
    sync_batchnorm: bool = True             # SyncBatchNorm under multi-GPU DDP (CUDA only: CPU/gloo cannot)
    # evaluation and artefacts
    tsne: bool = True                       # t-SNE plot after training (seconds on CPU for ≤3000 points)
    eval_max_samples: int = 10000           # cap on samples for cluster validity / pair statistics
    recipe: str | None = None               # the recipe this config came from (informational)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError for values no run could use (type and range checks)."""
        if self.optimizer not in ("adam", "sgd", "adamw"):
            raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("none", "multistep", "cosine"):
            raise ValueError(f"schedule must be 'none', 'multistep' or 'cosine', got {self.schedule!r}")
        for name in ("lr", "gamma"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("batch_size",):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("max_epochs", "max_steps", "early_stopping_patience", "warmup_epochs", "num_workers",
                     "episode_ways", "episode_shots"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative int, got {getattr(self, name)!r}")
        if self.max_epochs == 0 and self.max_steps == 0:
            raise ValueError("one of max_epochs or max_steps must be positive")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        for name in ("head_params", "backbone_params"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        if self.embedding_dim is not None and (not isinstance(self.embedding_dim, int) or self.embedding_dim < 1):
            raise ValueError(f"embedding_dim must be a positive int or null, got {self.embedding_dim!r}")
        if not isinstance(self.milestones, list) or not all(isinstance(m, int) for m in self.milestones):
            raise ValueError(f"milestones must be a list of ints, got {self.milestones!r}")


_SCIENTIFIC = re.compile(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+")


def _recipe_dir() -> Path:
    return Path(str(resources.files("featspace") / "recipes"))


def recipe_names() -> list[str]:
    """Names of the recipes shipped with featspace."""
    return sorted(p.stem for p in _recipe_dir().glob("*.yaml"))


def _read_recipe_file(name_or_path: str) -> tuple[str, dict[str, Any]]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        name = path.stem
    else:
        path = _recipe_dir() / f"{name_or_path}.yaml"
        name = name_or_path
        if not path.exists():
            raise ValueError(f"unknown recipe {name_or_path!r}; shipped recipes: {', '.join(recipe_names())} "
                             "(or give the path of a .yaml file)")
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping of config fields")
    return name, values


def describe_recipe(name: str) -> str:
    """The one-line description of a shipped recipe (its ``notes`` field's first line)."""
    _, values = _read_recipe_file(name)
    return str(values.get("notes", "")).strip().splitlines()[0] if values.get("notes") else ""


def load_recipe(name_or_path: str | None, overrides: list[str] | None = None) -> TrainConfig:
    """A shipped recipe (by name) or a YAML file (by path), with ``key=value`` overrides applied."""
    values: dict[str, Any] = {}
    if name_or_path:
        name, values = _read_recipe_file(name_or_path)
        values.setdefault("recipe", name)
    values = apply_overrides(values, overrides or [])
    return TrainConfig.from_dict(values)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (``a.b=v`` for nested mappings such as head_params) to a dict copy."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: cannot parse {raw!r} ({err})") from None
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if "." in key:
            outer, inner = key.split(".", 1)
            nested = out.setdefault(outer, {})
            if not isinstance(nested, dict):
                raise ValueError(f"override {item!r}: {outer} is not a mapping")
            nested[inner] = value
        else:
            out[key] = value
    return out
