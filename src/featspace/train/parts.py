"""The parts of a run: the data module, backbone and head a config describes, and a trained run's model with its
data (for evaluation; ``featspace.train.inference.load_run`` loads one for inference without its data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from featspace import data, heads, models
from featspace.config import TrainConfig
from featspace.models import external
from featspace.rundir import RunDir
from featspace.train.checkpoint_io import load_checkpoint
from featspace.train.module import FeatureModule

__all__ = ["DATA_CONFIG_KEYS", "build_model", "build_parts", "data_settings", "load_trained", "load_weights",
           "unknown_backbone_error"]

#: the keys of a backbone's ``data_config`` (a pretrained timm / torchvision backbone's preprocessing)
DATA_CONFIG_KEYS = ("mean", "std", "input_size", "interpolation", "crop_pct")


def data_settings(backbone: nn.Module, in_channels: int) -> dict[str, Any]:
    """What a backbone's ``data_config`` (None or a mapping with :data:`DATA_CONFIG_KEYS`) asks of the data
    pipeline, as DataModule arguments: ``normalization`` (mean, std), ``image_size``, ``interpolation``,
    ``crop_pct``; {} without one. A pretrained RGB backbone fed grey images gets the channel means of its
    statistics (the backbone adapts its first layer to the channels)."""
    config = getattr(backbone, "data_config", None)
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ValueError(f"backbone data_config must be a mapping with keys {', '.join(DATA_CONFIG_KEYS)} or None, "
                         f"got {type(config).__name__}")
    settings: dict[str, Any] = {}
    mean, std = config.get("mean"), config.get("std")
    if mean is not None and std is not None:
        mean, std = [float(v) for v in mean], [float(v) for v in std]
        if len(mean) != in_channels:
            mean, std = [sum(mean) / len(mean)] * in_channels, [sum(std) / len(std)] * in_channels
        settings["normalization"] = (tuple(mean), tuple(std))
    if config.get("input_size") is not None:
        size = config["input_size"]
        settings["image_size"] = int(size[-1] if isinstance(size, Sequence) else size)  # timm: (C, H, W)
    if config.get("interpolation") is not None:
        settings["interpolation"] = str(config["interpolation"])
    if config.get("crop_pct") is not None:
        settings["crop_pct"] = float(config["crop_pct"])
    return settings


def build_parts(config: TrainConfig, *, normalization: tuple[Sequence[float], Sequence[float]] | None = None,
                backbone: nn.Module | None = None, initial_weights: bool = True,
                ) -> tuple[data.DataModule, nn.Module, heads.Head]:
    """The data module, backbone and head a config describes (``backbone``, ``initial_weights``: as
    :func:`build_model`).

    The backbone is built before the data module is finished: when it carries a ``data_config`` (a pretrained
    backbone, see :func:`data_settings`) its normalization, image size, interpolation and crop replace the
    dataset's statistics and defaults — except a config's explicit ``image_size``, which wins. A backbone built for
    another side than its ``data_config`` asks for is built again at that side. ``normalization`` (mean, std), a
    trained run's saved statistics, replaces both (``featspace eval`` never recomputes them)."""
    options = data.DATASETS.parameters(config.dataset)
    bundle = data.load(config.dataset, data_dir=config.data_dir, download=config.download,
                       image_size=config.image_size if "image_size" in options else None,
                       skip_corrupt=config.skip_corrupt, **config.dataset_params)
    streaming = isinstance(bundle, data.FolderBundle)
    side = config.image_size or (bundle.image_size if streaming else bundle.image_size[0])
    ready = backbone
    backbone, head = build_model(config, in_channels=bundle.in_channels, image_size=side,
                                 num_classes=bundle.num_classes, backbone=ready, initial_weights=initial_weights)
    settings = data_settings(backbone, bundle.in_channels)
    if config.image_size is not None:
        settings["image_size"] = config.image_size
    if settings.get("image_size", side) != side:
        backbone, head = build_model(config, in_channels=bundle.in_channels, image_size=settings["image_size"],
                                     num_classes=bundle.num_classes, backbone=ready, initial_weights=initial_weights)
    if normalization is not None:
        settings["normalization"] = normalization
    datamodule = data.DataModule(bundle, batch_size=config.batch_size, val_fraction=config.val_fraction,
                                 seed=config.seed, augment=config.augment, num_workers=config.num_workers,
                                 episode_ways=config.episode_ways, episode_shots=config.episode_shots, **settings)
    return datamodule, backbone, head


def unknown_backbone_error(config: TrainConfig) -> ValueError | None:
    """Why ``config.backbone`` cannot be built here, or None when it can: a timm or torchvision name the library
    does not have, or a backbone of the user's own that no ``--import`` has registered in this process. A config
    only *records* the modules a run imported (``config.imports``); nothing is imported because a recipe, suite or
    run directory names it."""
    name = config.backbone
    if external.library_of(name) is not None:
        try:
            external.check_model(name)  # the library has it (timm: a tag allowed)
        except ValueError as err:
            return err
        return None
    if models.is_known(name):
        return None
    if config.imports:
        flags = " ".join(f"--import {module}" for module in config.imports)
        return ValueError(f"backbone {name!r} is not registered: it came from {', '.join(config.imports)} (the run's "
                          f"config records --import); pass {flags} to this command (a module importable from the "
                          "current directory or PYTHONPATH, or a .py path)")
    if name.startswith(models.MODULE_PREFIX):
        return ValueError(f"backbone {name!r} was a ready nn.Module given to featspace.train.train(config, "
                          f"backbone=...); to use this run from the command line, register a factory for it in a "
                          f"module (@featspace.models.register_backbone({name!r})) and pass --import MODULE")
    return ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(models.names())}; or timm:<name>, "
                      "torchvision:<name>; a backbone of your own: register it in a module "
                      "(featspace.models.register_backbone) and pass --import MODULE")


def build_model(config: TrainConfig, *, in_channels: int, image_size: int, num_classes: int,
                backbone: nn.Module | None = None, initial_weights: bool = True) -> tuple[nn.Module, heads.Head]:
    """The (untrained) backbone and head a config describes, for images of ``in_channels`` × ``image_size``.

    backbone: a ready ``nn.Module`` to use instead of building ``config.backbone`` (``models.wrap_module``:
        ``featspace.train.train(config, backbone=...)``); its name must be the config's.
    initial_weights: load the backbone's initial weights (``backbone_params.pretrained`` / ``weights``); False when
        a checkpoint replaces them anyway (evaluation, inference, resume), which then needs neither the internet
        nor the original weights file.
    """
    if backbone is not None:
        backbone = models.wrap_module(backbone, in_channels=in_channels, embedding_dim=config.embedding_dim,
                                      image_size=image_size)
        if backbone.name != config.backbone:
            raise ValueError(f"the backbone given is {backbone.name!r} but the config names {config.backbone!r}")
        if config.embedding_dim is not None and backbone.embedding_dim != config.embedding_dim:
            raise ValueError(f"the backbone given ({backbone.name}) embeds in {backbone.embedding_dim} dimensions but "
                             f"embedding_dim is {config.embedding_dim}; set embedding_dim to {backbone.embedding_dim} "
                             "or null")
    else:
        missing = unknown_backbone_error(config)
        if missing is not None:
            raise missing
        backbone = models.build_backbone(config.backbone, in_channels=in_channels,
                                         embedding_dim=config.embedding_dim, image_size=image_size,
                                         initial_weights=initial_weights, **config.backbone_params)
    head = heads.build(config.head, backbone.embedding_dim, num_classes, **config.head_params)
    return backbone, head


def load_weights(module: nn.Module, checkpoint: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint's ``state_dict`` (keys ``backbone.*``, ``head.*``) into ``module``; returns the whole
    checkpoint. A checkpoint without one, or with another config's weights, is a one-line ValueError."""
    state = load_checkpoint(checkpoint, map_location=map_location)
    weights = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise ValueError(f"checkpoint {checkpoint} holds no state_dict; it is not a featspace checkpoint")
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:  # missing / unexpected keys or shapes: another config's weights
        first = " ".join(str(err).split())[:300]
        raise ValueError(f"checkpoint {checkpoint} does not fit the run's config.yaml ({first})") from None
    return state


def saved_normalization(rundir: RunDir) -> tuple[list[float], list[float]] | None:
    """The (mean, std) a run was trained with, from its ``model.json`` (None before it has one)."""
    try:
        info = rundir.read_model()
    except (FileNotFoundError, ValueError):
        return None
    if isinstance(info.get("mean"), list) and isinstance(info.get("std"), list):
        return info["mean"], info["std"]
    return None


def load_trained(run_dir: str | Path, *, with_data: bool = True) -> tuple[FeatureModule, Any, Path]:
    """The trained model of a run: (module with its weights and config, the run's data module, the checkpoint
    read). The weights are those the run is evaluated with (``RunDir.evaluation_checkpoint``). The data module is
    built with the normalization saved in ``model.json`` when there is one. ``with_data=False`` builds the model
    from ``model.json`` alone, without reading the dataset (the data module is then None)."""
    rundir = RunDir(run_dir)
    config = rundir.read_config()
    chosen = rundir.evaluation_checkpoint(config)
    if with_data:  # the checkpoint's weights replace the initial ones: never read them again
        datamodule, backbone, head = build_parts(config, normalization=saved_normalization(rundir),
                                                 initial_weights=False)
        datamodule.setup("fit")
    else:
        info = rundir.read_model()
        datamodule = None
        backbone, head = build_model(config, in_channels=int(info["in_channels"]),
                                     image_size=int(info["image_size"][0]), num_classes=int(info["num_classes"]),
                                     initial_weights=False)
    module = FeatureModule(backbone, head, config, steps_per_epoch=1)
    state = load_weights(module, chosen)
    module.on_load_checkpoint(state)
    return module, datamodule, chosen
