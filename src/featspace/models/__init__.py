"""Backbones (``featspace.models``): images ``[B, C, H, W]`` → embeddings ``[B, D]``.

``build_backbone(name, in_channels=..., embedding_dim=None | D)``; ``register_backbone(name)`` adds your own
factory (see its docstring for the signature); ``names()`` and ``describe(name)`` list them: small_cnn,
resnet18_cifar, resnet50_cifar, resnet12, and torchvision's resnet50, resnext50_32x4d, wide_resnet50_2,
densenet121, mobilenet_v2 (untrained, adapted to the input channels, classifier removed).
"""

from featspace.models.backbones import Backbone, SmallCNN, build_backbone, describe, names, register_backbone
from featspace.models.resnet12 import ResNet12, ResNet12Block

__all__ = ["Backbone", "ResNet12", "ResNet12Block", "SmallCNN", "build_backbone", "describe", "names",
           "register_backbone"]
