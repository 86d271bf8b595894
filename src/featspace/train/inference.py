"""A trained run for inference: ``load_run(RUN_DIR)`` builds its backbone and head from ``config.yaml`` and
``model.json`` and loads the weights it was evaluated with, without touching its training data.

    uint8 images [B, C, H, W] ─► normalise (the run's mean/std) ─► backbone ─► embeddings [B, d] ─► head ─► scores
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from featspace.data import normalize, read_image
from featspace.rundir import RunDir
from featspace.train.parts import build_model, load_weights

__all__ = ["TrainedRun", "load_run"]


class TrainedRun(nn.Module):
    """Backbone + head of a finished run with what inference needs: ``class_names``, ``in_channels``,
    ``image_size`` (H, W), ``mean``/``std`` (per channel, on [0, 1]). In eval mode; ``predict`` and ``embed`` take
    uint8 images [B, C, H, W] (``read_image`` makes them from files) or already normalised float images."""

    def __init__(self, backbone: nn.Module, head: nn.Module, *, class_names: Sequence[str], in_channels: int,
                 image_size: Sequence[int], mean: Sequence[float], std: Sequence[float], resize: str = "stretch",
                 crop_pct: float = 1.0, interpolation: str = "bilinear") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.class_names = [str(n) for n in class_names]
        self.in_channels = int(in_channels)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        #: how a file is brought to ``image_size``, as the run's test images were (``featspace.data.read_image``)
        self.resize, self.crop_pct, self.interpolation = str(resize), float(crop_pct), str(interpolation)

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 images as in training (``featspace.data.normalize``); float images are taken as normalised."""
        return normalize(images, self.mean, self.std) if images.dtype == torch.uint8 else images

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Embeddings [B, d]."""
        device = next(self.parameters()).device
        return self.backbone(self.preprocess(images.to(device)))

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Scores [B, C] (the head's ``predict``: argmax is the class)."""
        return self.head.predict(self.embed(images))

    def read(self, path: str | Path) -> Tensor:
        """uint8 [C, H, W] of an image file, decoded and resized as this run's training images were."""
        return read_image(path, channels=self.in_channels, size=self.image_size, resize=self.resize,
                          crop_pct=self.crop_pct, interpolation=self.interpolation)


def load_run(run_dir: str | Path, *, map_location: str | torch.device = "cpu") -> TrainedRun:
    """The model of a finished run, ready for ``predict`` (eval mode, on ``map_location``)."""
    rundir = RunDir(run_dir)
    config = rundir.read_config()
    info = rundir.read_model()
    # initial_weights=False: the run's own weights replace any pretrained ones (no download, no weights file)
    backbone, head = build_model(config, in_channels=int(info["in_channels"]), image_size=int(info["image_size"][0]),
                                 num_classes=int(info["num_classes"]), initial_weights=False)
    run = TrainedRun(backbone, head, class_names=info["class_names"], in_channels=info["in_channels"],
                     image_size=info["image_size"], mean=info["mean"], std=info["std"],
                     # runs written before image folders streamed have no resize keys: they stretched
                     resize=info.get("resize", "stretch"), crop_pct=info.get("crop_pct", 1.0),
                     interpolation=info.get("interpolation", "bilinear"))
    load_weights(run, rundir.evaluation_checkpoint(config), map_location)  # FeatureModule's keys fit TrainedRun's
    return run.to(map_location).eval()
