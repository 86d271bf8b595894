"""Backbones (``featspace.models``): images ``[B, C, H, W]`` → embeddings ``[B, D]``.

``build_backbone(name, in_channels=..., embedding_dim=None | D)``; ``register_backbone(name)`` adds your own
factory (see its docstring for the signature); ``names()`` and ``describe(name)`` list them: small_cnn,
resnet18_cifar, resnet50_cifar, resnet12, and torchvision's resnet50, resnext50_32x4d, wide_resnet50_2,
densenet121, mobilenet_v2 (untrained, adapted to the input channels, classifier removed). ``timm:<name>`` and
``torchvision:<name>`` build any model of those libraries (``external``; ``prefixes()`` lists them), with
``pretrained=True`` for the published weights; ``weights=PATH`` loads a local state dict into any backbone's
trunk (``weights``); ``wrap_module(module, in_channels=...)`` makes a ready ``nn.Module`` a :class:`Backbone`.
"""

from featspace.models.backbones import (
    MODULE_PREFIX,
    Backbone,
    SmallCNN,
    build_backbone,
    describe,
    is_known,
    module_name,
    names,
    prefixes,
    register_backbone,
    wrap_module,
)
from featspace.models.resnet12 import ResNet12, ResNet12Block
from featspace.models.weights import load_trunk_weights, read_state_dict

__all__ = ["MODULE_PREFIX", "Backbone", "ResNet12", "ResNet12Block", "SmallCNN", "build_backbone", "describe",
           "is_known", "load_trunk_weights", "module_name", "names", "prefixes", "read_state_dict", "register_backbone",
           "wrap_module"]
