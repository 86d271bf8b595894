"""The configuration of a run: every hyperparameter in one place, each with its unit, and its identity.

A run is described by a :class:`TrainConfig`. Recipes (YAML files shipped in ``featspace/recipes``)
give the papers' setups; any field can be overridden with ``key=value`` strings (values parsed as YAML,
so ``lr=1e-3``, ``milestones=[30,60]`` and ``head_params.lam=0.5`` all work) or with a mapping of typed
values (what the command line passes: typed values go straight into the config, never back through text).
The resolved config is saved with every run as ``config.yaml``.

This module sits below training, suites and reports, which all read configs: it also owns the dot-key view
of a config (``flatten``, ``config_value``), the text of a value as an axis label (``label_text``) and the
identity of a config without its seed (``cell_hash``), so a bench and a report can never disagree on which
run belongs to which cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from featspace import heads
from featspace.heads import hparams
from featspace.io import load_yaml, read_yaml

__all__ = [
    "LOGGERS",
    "NON_RESULT_FIELDS",
    "TrainConfig",
    "apply_overrides",
    "as_list",
    "cell_hash",
    "config_value",
    "describe_recipe",
    "flatten",
    "label_text",
    "load_recipe",
    "merge",
    "parse_overrides",
    "read_shipped_yaml",
    "recipe_names",
    "shipped_names",
]


#: the experiment trackers a run can log to (``TrainConfig.loggers``), each one of Lightning's loggers
LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")


@dataclass
class TrainConfig:
    """Hyperparameters of one training run. Units are in the comments."""

    # what is trained
    dataset: str = "digits"                 # featspace.data name
    dataset_params: dict[str, Any] = field(default_factory=dict)  # the dataset's options (e.g. imagenet classes)
    data_dir: str | None = None             # where the dataset files are (None: the loader's defaults)
    download: bool = False                  # fetch the dataset where there is internet
    backbone: str = "small_cnn"             # featspace.models name
    embedding_dim: int | None = 64          # width d of the embedding (None: the backbone's native width)
    backbone_params: dict[str, Any] = field(default_factory=dict)  # backbone options (e.g. small_cnn norm)
    head: str = "softmax"                   # featspace.heads name
    head_params: dict[str, Any] = field(default_factory=dict)  # hyperparameters of the head
    # optimisation
    optimizer: str = "adam"                 # "adam" | "adamw" | "sgd"
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
    # fine-tuning: "backbone" is the trunk (the pretrained network); the neck, a new layer, trains with the head
    freeze_backbone_epochs: int = 0         # epochs, from the first, in which the trunk is frozen (eval mode, no
                                            # gradient, unchanged); 0 = off; >= max_epochs: a linear probe
    backbone_lr_scale: float = 1.0          # the trunk's learning rate as a fraction of lr (the head's), in (0, 1e4]
    freeze_batchnorm: bool = False          # the trunk's BatchNorm layers in eval mode with frozen affine parameters,
                                            # for the whole run
    # data
    val_fraction: float = 0.1               # stratified hold-out of the training set (LACE: 10%)
    augment: bool | str = True              # true: the dataset's standard policy; false: none; or a policy name
    image_size: int | None = None           # pixels, side of the square images the model sees (None: dataset's)
    skip_corrupt: bool = False              # image folders: skip unreadable files (listed in skipped_files.txt)
    num_workers: int = 0                    # DataLoader workers (they decode the streamed image folders)
    # reproducibility and hardware
    seed: int = 0
    deterministic: bool = False             # torch deterministic algorithms (slower)
    accelerator: str = "auto"               # "cpu" | "gpu" | "auto"
    devices: str | int = 1                  # processes/devices per node
    num_nodes: int = 1
    strategy: str = "auto"                  # "auto" | "ddp" | ...
    precision: str = "32-true"              # Lightning precision; "bf16-mixed" / "16-mixed" on CUDA
    sync_batchnorm: bool = True             # SyncBatchNorm under multi-GPU DDP (CUDA only: CPU/gloo cannot)
    compile: bool = False                   # torch.compile the step's forward (backbone + head); first steps compile
    channels_last: bool = False             # channels-last memory format for the backbone and its input images
    # evaluation and artefacts
    tsne: bool = True                       # t-SNE plot after training (seconds on CPU for ≤3000 points)
    eval_max_samples: int = 10000           # cap on samples for cluster validity / pair statistics
    # experiment tracking through Lightning's loggers: any of "csv" (RUN/logs), "tensorboard" (RUN/tensorboard),
    # "wandb" and "mlflow" (optional extras, configured by their own environment variables)
    loggers: list[str] = field(default_factory=lambda: list(LOGGERS[:2]))
    recipe: str | None = None               # the recipe this config came from (informational)
    imports: list[str] = field(default_factory=list)  # modules --import loaded before names were resolved (a
                                            # record: nothing is ever imported because a config names it)
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
        """Raise ValueError naming the field for any value no run could use: every field's type and range is
        checked here, in one place, with the wording of the head hyperparameters (``featspace.heads.hparams``),
        so a typo fails before anything is loaded (``augment=notabool``, ``lr=.inf``, ``weight_decay=-1``)."""
        for name, check in _FIELD_CHECKS.items():
            check(name, getattr(self, name))
        if self.max_epochs == 0 and self.max_steps == 0:
            raise ValueError("one of max_epochs or max_steps must be positive")


def _text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _optional_text(name: str, value: object) -> None:
    if value is not None:
        _text(name, value)


def _free_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")


def _mapping(name: str, value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} must be a mapping of names to values, got {value!r}")


def _milestones(name: str, value: object) -> None:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of non-negative ints, got {value!r}")
    for milestone in value:
        hparams.integer(name, milestone, low=0, hint="each milestone")


def _loggers(name: str, value: object) -> None:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of loggers (any of {', '.join(LOGGERS)}), got {value!r}")
    for item in value:
        hparams.choice(name, item, LOGGERS)
    if len(set(value)) != len(value):
        raise ValueError(f"{name} names a logger twice: {value!r}")


def _module_names(name: str, value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{name} must be a list of module names or .py paths, got {value!r}")


#: what dataset_params may not set: the config fields (and the loader argument) that say it already
_DATASET_FIELDS = ("root", "data_dir", "download", "image_size", "skip_corrupt")


def _dataset_params(name: str, value: object) -> None:
    _mapping(name, value)
    taken = sorted(set(value) & set(_DATASET_FIELDS))  # type: ignore[arg-type]
    if taken:
        raise ValueError(f"{name} may not set {', '.join(taken)}: set the config field of that name instead")


def _augment(name: str, value: object) -> None:
    from featspace.data.transforms import POLICIES  # here, not at the top: configs load without the data stack

    if not isinstance(value, bool) and value not in POLICIES:
        raise ValueError(f"{name} must be true (the dataset's standard policy), false (none) or one of "
                         f"{', '.join(POLICIES)}, got {value!r}")


def _devices(name: str, value: object) -> None:
    # what Lightning accepts: a count >= 1, -1 (all), "auto", or a list of device indices "0,1"
    if isinstance(value, str):
        text = value.strip()
        ok = text in ("auto", "-1") or (text.isdigit() and int(text) >= 1) or (
            "," in text and all(part.strip().isdigit() for part in text.split(",") if part.strip()))
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1)
    if not ok:
        raise ValueError(f"{name} must be a count >= 1, -1 (all), 'auto' or device indices like '0,1', "
                         f"got {value!r}")


def _optional_positive_int(name: str, value: object) -> None:
    if value is not None:
        hparams.integer(name, value, low=1, hint="or null")


def _booleans(*names: str) -> dict[str, Any]:
    return {n: hparams.boolean for n in names}


def _non_negative_ints(*names: str) -> dict[str, Any]:
    return {n: lambda name, value: hparams.integer(name, value, low=0) for n in names}


#: the precisions Lightning's Trainer takes
_PRECISIONS = ("32-true", "32", 32, "64-true", "64", 64, "bf16-mixed", "bf16", "16-mixed", "16", 16, "bf16-true",
               "16-true", "transformer-engine")

#: field -> check(name, value) raising ValueError; every field of TrainConfig has one (tests/test_config.py)
_FIELD_CHECKS: dict[str, Any] = {
    "dataset": _text, "data_dir": _optional_text, "backbone": _text, "head": _text, "recipe": _optional_text,
    "accelerator": _text, "strategy": _text, "notes": _free_text,
    "backbone_params": _mapping, "head_params": _mapping, "dataset_params": _dataset_params,
    "embedding_dim": _optional_positive_int, "image_size": _optional_positive_int, "augment": _augment,
    "optimizer": lambda name, value: hparams.choice(name, value, ("adam", "adamw", "sgd")),
    "schedule": lambda name, value: hparams.choice(name, value, ("none", "multistep", "cosine")),
    "precision": lambda name, value: hparams.choice(name, value, _PRECISIONS),
    "lr": lambda name, value: hparams.real(name, value, low=0.0, low_open=True),
    "gamma": lambda name, value: hparams.real(name, value, low=0.0, low_open=True),
    "momentum": lambda name, value: hparams.real(name, value, low=0.0, high=1.0),
    "weight_decay": lambda name, value: hparams.real(name, value, low=0.0),
    "gradient_clip": lambda name, value: hparams.real(name, value, low=0.0, hint="0 = off"),
    "val_fraction": lambda name, value: hparams.real(name, value, low=0.0, high=1.0, high_open=True),
    "batch_size": lambda name, value: hparams.integer(name, value, low=1),
    "num_nodes": lambda name, value: hparams.integer(name, value, low=1),
    "eval_max_samples": lambda name, value: hparams.integer(name, value, low=2),
    "seed": lambda name, value: hparams.integer(name, value),
    "backbone_lr_scale": lambda name, value: hparams.real(name, value, low=0.0, low_open=True, high=1e4,
                                                          hint="the trunk's lr as a fraction of lr"),
    "milestones": _milestones,
    "loggers": _loggers,
    "imports": _module_names,
    "devices": _devices,
    **_booleans("download", "nesterov", "head_weight_decay", "deterministic", "sync_batchnorm", "tsne",
                "freeze_batchnorm", "skip_corrupt", "compile", "channels_last"),
    **_non_negative_ints("warmup_epochs", "episode_ways", "episode_shots", "max_epochs", "max_steps",
                         "early_stopping_patience", "num_workers", "freeze_backbone_epochs"),
}


_SCIENTIFIC = re.compile(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+")


def _shipped_dir(folder: str) -> Path:
    return Path(str(resources.files("featspace") / folder))


def shipped_names(folder: str) -> list[str]:
    """Names of the YAML files shipped in ``featspace/<folder>`` (``recipes``, ``suites``)."""
    return sorted(p.stem for p in _shipped_dir(folder).glob("*.yaml"))


def recipe_names() -> list[str]:
    """Names of the recipes shipped with featspace."""
    return shipped_names("recipes")


def read_shipped_yaml(name_or_path: str | Path, folder: str, kind: str) -> tuple[str, Path, dict[str, Any]]:
    """A YAML mapping shipped in ``featspace/<folder>`` (by name) or at a path the user gives: (name, path,
    values), safe-loaded. Recipes and suites are both read this way; ``kind`` names them in errors."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_dir():
        raise ValueError(f"{kind} {path} is a directory, not a YAML file")
    if path.suffix in (".yaml", ".yml") and path.is_file():
        name = path.stem
    else:
        path, name = _shipped_dir(folder) / f"{name_or_path}.yaml", str(name_or_path)
        if not path.is_file():
            known = ", ".join(shipped_names(folder))
            raise ValueError(f"unknown {kind} {name!r}; shipped {kind}s: {known} (or give the path of a "
                             f"{kind} .yaml file)")
    values = read_yaml(path) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{kind} {path} must be a YAML mapping")
    return name, path, values


def _read_recipe_file(name_or_path: str) -> tuple[str, dict[str, Any]]:
    name, _, values = read_shipped_yaml(name_or_path, "recipes", "recipe")
    return name, values


def describe_recipe(name: str) -> str:
    """The one-line description of a shipped recipe (its ``notes`` field's first line)."""
    _, values = _read_recipe_file(name)
    return str(values.get("notes", "")).strip().splitlines()[0] if values.get("notes") else ""


def load_recipe(name_or_path: str | None, overrides: list[str] | Mapping[str, Any] | None = None) -> TrainConfig:
    """A shipped recipe (by name) or a YAML file (by path), with overrides applied: ``key=value`` strings
    (values parsed as YAML) or a mapping of typed values (``{"max_epochs": 3, "head_params.lam": 0.5}``)."""
    values: dict[str, Any] = {}
    if name_or_path:
        name, values = _read_recipe_file(name_or_path)
        values.setdefault("recipe", name)
    values = apply_overrides(values, overrides or [])
    return TrainConfig.from_dict(values)


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, Any]]:
    """``key=value`` strings as (key, typed value) pairs, values parsed as YAML (``lr=1e-3`` is a float)."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        value = load_yaml(raw, source=f"override {item!r}") if raw.strip() else None
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        parsed.append((key.strip(), value))
    return parsed


def apply_overrides(values: dict[str, Any], overrides: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with overrides set: ``key=value`` strings or a mapping of typed values. A dot key
    (``head_params.lam``) sets one entry of a nested mapping; a plain key replaces the field whole."""
    pairs = list(overrides.items()) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    return merge(values, pairs, merge_mappings=False)


def merge(values: dict[str, Any], layer: Mapping[str, Any] | Iterable[tuple[str, Any]], *,
          merge_mappings: bool = True) -> dict[str, Any]:
    """A copy of ``values`` with a layer of typed values applied. Dot keys (``head_params.lam``) reach into
    nested mappings; with ``merge_mappings`` a mapping value is merged into the mapping it replaces (the suites'
    layering: recipe, then ``set``, then each axis's choice), else it replaces it (an explicit override)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for key, value in (layer.items() if isinstance(layer, Mapping) else layer):
        if "." in key:
            outer, inner = key.split(".", 1)
            nested = out.get(outer)
            if nested is None:
                nested = out[outer] = {}
            if not isinstance(nested, dict):
                raise ValueError(f"override {key}: {outer} is not a mapping")
            nested[inner] = value
        elif merge_mappings and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------- configs as flat keys, and their labels
def flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{head_params: {lam: 1}, lr: 0.1}`` -> ``{head_params.lam: 1, lr: 0.1}``: the dot keys by which suites,
    overrides and report axes name config values (an empty ``head_params`` stays as ``head_params: {}``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "head_params" and isinstance(value, dict):
            if not value:
                out[key] = {}
            for inner, inner_value in value.items():
                out[f"head_params.{inner}"] = inner_value
        else:
            out[str(key)] = value
    return out


def config_value(config: TrainConfig | Mapping[str, Any], key: str) -> Any:
    """The value of a config key; ``head_params.x`` reaches into the head's hyperparameters (None if unset)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else config
    if "." in key:
        outer, inner = key.split(".", 1)
        nested = values.get(outer) or {}
        return nested.get(inner) if isinstance(nested, dict) else None
    return values.get(key)


def label_text(value: Any) -> str:
    """How a config value is shown as a label of a suite's or report's axis (``true``/``false`` as YAML writes
    them, so a label matches the value a user typed)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_list(value: Any) -> list[Any]:
    """A YAML field that may be one item or a list of them, as a list (None: empty)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---------------------------------------------------------------------------------- the identity of a config
#: config fields that never change what a run computes, left out of the cell hash
NON_RESULT_FIELDS = ("data_dir", "download", "num_workers", "notes", "recipe", "tsne", "loggers", "imports", "compile",
                     "channels_last")


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def cell_hash(config: TrainConfig | Mapping[str, Any]) -> str:
    """``<head>-<10 hex digits>``: the identity of a resolved config without its seed.

    The digits are the first 10 of the SHA-256 of the canonical JSON of the config without the seed, without
    ``NON_RESULT_FIELDS``, without the fields equal to ``TrainConfig``'s defaults and without the head
    hyperparameters equal to the head's registered defaults (so a field or hyperparameter added later with a
    default keeps every existing key); integral floats are written as integers (``lam: 1`` = ``lam: 1.0``).
    The price of ignoring defaults: changing a default in the code does not change the keys of runs that relied
    on it, so such a change should come with a new suite name or a ``--set``."""
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    defaults = TrainConfig().to_dict()
    kept = {}
    for key, value in values.items():
        if key == "seed" or key in NON_RESULT_FIELDS:
            continue
        if key in defaults and _canonical(value) == _canonical(defaults[key]):
            continue
        kept[key] = value
    if isinstance(kept.get("head_params"), dict):
        try:
            head_defaults = heads.default_hparams(str(values.get("head")))
        except ValueError:  # an unknown head: nothing to leave out
            head_defaults = {}
        params = {k: v for k, v in kept["head_params"].items()
                  if not (k in head_defaults and _canonical(v) == _canonical(head_defaults[k]))}
        if params:
            kept["head_params"] = params
        else:
            del kept["head_params"]
    text = json.dumps(_canonical(kept), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"{values.get('head', 'head')}-{digest}"
