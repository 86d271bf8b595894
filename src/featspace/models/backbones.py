"""Backbones: images ``[B, C, H, W]`` → embeddings ``[B, D]``, with an optional linear neck.

Every backbone is wrapped in :class:`Backbone`: a trunk producing the network's native features
(``feature_dim``: 512 for ResNet-18, 2048 for ResNet-50, 640 for ResNet-12, ...) and, when an
``embedding_dim`` is asked for, a linear neck to that width — POD's FC1 (002_ec5345d43eb6f956.txt,
Sec. 4) or HASeparator's 64-unit dense layer before the classifier (004_442ee0fd9060adbb.txt, Sec. IV).
The neck is a plain ``nn.Linear`` (no activation), so the embedding can take any sign, as the heads'
formulas assume. Classifier layers of the torchvision networks are removed.

Three kinds of name reach :func:`build_backbone`: the registered ones (featspace's own and yours, through
:func:`register_backbone`), ``timm:<name>`` and ``torchvision:<name>`` (any model of those libraries,
``featspace.models.external``). The option ``weights: PATH`` loads a local state dict into any backbone's trunk
(``featspace.models.weights``); ``pretrained: true`` (timm and torchvision) loads the published weights.
:func:`wrap_module` makes a ready ``nn.Module`` a Backbone (``featspace.train.train(config, backbone=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from featspace.models import external
from featspace.models.resnet12 import ResNet12
from featspace.models.weights import load_trunk_weights
from featspace.registry import Registry

__all__ = ["BACKBONES", "MODULE_PREFIX", "Backbone", "SmallCNN", "build_backbone", "describe", "is_known",
           "module_name", "names", "prefixes", "register_backbone", "wrap_module"]

#: the name prefix of a backbone that was a ready ``nn.Module`` (``wrap_module``): ``module:<ClassName>``
MODULE_PREFIX = "module:"


class Backbone(nn.Module):
    """A trunk with native width ``feature_dim`` and an optional linear neck to ``embedding_dim``.

    ``forward(images [B, in_channels, H, W]) -> embeddings [B, embedding_dim]``; ``features(images)`` is the
    trunk's output ``[B, feature_dim]`` before the neck.

    ``data_config``: how the trunk's pretrained weights expect their input, or None when the dataset's own
    statistics apply — a dict with ``mean`` and ``std`` (tuples of floats, one per input channel, on [0, 1]),
    ``input_size`` (int: the side of the square image), ``interpolation`` ("bilinear" | "bicubic") and
    ``crop_pct`` (float: the centre crop's share of the resized image at evaluation). timm and torchvision
    backbones with ``pretrained: true`` or a ``weights`` file set it from the model's pretrained config.
    """

    def __init__(self, name: str, trunk: nn.Module, in_channels: int, feature_dim: int,
                 embedding_dim: int | None = None, *, data_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.in_channels = in_channels
        self.feature_dim = feature_dim
        self.neck: nn.Module = nn.Linear(feature_dim, embedding_dim) if embedding_dim is not None else nn.Identity()
        self.embedding_dim = embedding_dim if embedding_dim is not None else feature_dim
        self.data_config = data_config

    def features(self, images: Tensor) -> Tensor:
        """The trunk's features ``[B, feature_dim]`` of ``images [B, in_channels, H, W]``."""
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"{self.name}: expected images [B, {self.in_channels}, H, W], got {tuple(images.shape)}")
        return self.trunk(images)

    def forward(self, images: Tensor) -> Tensor:
        return self.neck(self.features(images))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_dim={self.feature_dim}, embedding_dim={self.embedding_dim}"


class SmallCNN(nn.Module):
    """A CNN that trains on a CPU in minutes: three stride-2 3×3 conv-BN-ReLU stages, a 4×4 adaptive
    average pool, then FC(hidden)-BN-ReLU and FC(embedding_dim).

    ``[B, C, H, W] → [B, embedding_dim]``; 28×28 maps go 14 → 7 → 4. The intra-class-variance paper
    (001_d60953f2522e3b0f.txt, Sec. 3.3) trains "a CNN" with 2- or 4-d embeddings on (Fashion-)MNIST but
    its layer list did not survive in the text, so this one is featspace's own, sized for speed: strided
    convolutions instead of conv + max-pool keep the activations small, which is what a CPU pays for.
    The last layer is linear (embeddings may be negative). Works on 8×8 digits too (8 → 4 → 2 → 1).
    """

    def __init__(self, in_channels: int, embedding_dim: int = 64, widths: tuple[int, int, int] = (16, 32, 64),
                 hidden: int = 128, norm: str = "batch") -> None:
        super().__init__()
        if norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}")
        # norm="none" gives a network whose output for a sample does not depend on the rest of its batch:
        # DDP on CPU cannot synchronise batch norm (SyncBatchNorm needs CUDA), so this is the backbone
        # with which a P-process run equals a one-process run on the same global batches.
        batch_norm = norm == "batch"
        layers: list[nn.Module] = []
        planes = in_channels
        for width in widths:
            layers += [nn.Conv2d(planes, width, 3, stride=2, padding=1, bias=not batch_norm),
                       nn.BatchNorm2d(width) if batch_norm else nn.Identity(), nn.ReLU(inplace=True)]
            planes = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(planes * 16, hidden, bias=not batch_norm),
                                   nn.BatchNorm1d(hidden) if batch_norm else nn.Identity(),
                                   nn.ReLU(inplace=True), nn.Linear(hidden, embedding_dim))

    def forward(self, images: Tensor) -> Tensor:
        return self.embed(self.features(images))


# ---------------------------------------------------------------------------------------------- builders

#: every backbone by name; a factory takes ``(in_channels, embedding_dim, **options)`` (see register_backbone)
BACKBONES = Registry("backbone", fixed=("in_channels", "embedding_dim"), parameter="option")
FactoryT = TypeVar("FactoryT", bound=Callable[..., Backbone])


def register_backbone(name: str, *, description: str | None = None,
                      min_image_size: int = 1) -> Callable[[FactoryT], FactoryT]:
    """Decorator: make a backbone factory buildable as ``build_backbone(name, in_channels=..., ...)``.

    The factory's signature is ``factory(in_channels: int, embedding_dim: int | None, **options) -> Backbone``:

    - ``in_channels``: channels of the input images (1 for grayscale, 3 for RGB);
    - ``embedding_dim``: the width D the caller wants, or None for the network's native width; a trunk with
      native width F wrapped as ``Backbone(name, trunk, in_channels, F, embedding_dim)`` gets the linear neck
      F → D that this asks for;
    - options: keyword arguments with defaults (``width: int = 64``); ``build_backbone`` rejects any other
      keyword, listing these, before calling the factory (a factory with ``**kwargs`` is not checked);
      an option named ``image_size`` receives ``build_backbone``'s ``image_size`` (the input side).

    It returns a :class:`Backbone` whose ``forward`` maps ``[B, in_channels, H, W]`` to ``[B, embedding_dim]``.
    description: one line for ``describe(name)`` (default: the first line of the factory's docstring).
    min_image_size: the smallest image side the network accepts; ``build_backbone`` refuses smaller ones.
    A name already taken by another factory is a ``ValueError``.

    >>> @register_backbone("tiny_mlp", description="flatten + one linear layer; for tests")
    ... def tiny_mlp(in_channels: int, embedding_dim: int | None, image_size: int = 8) -> Backbone:
    ...     trunk = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, 32))
    ...     return Backbone("tiny_mlp", trunk, in_channels, 32, embedding_dim)
    """
    return BACKBONES.register(name, description=description, min_image_size=min_image_size)


def _small_cnn(in_channels: int, embedding_dim: int | None, widths: tuple[int, int, int] = (16, 32, 64),
               hidden: int = 128, norm: str = "batch") -> Backbone:
    d = 64 if embedding_dim is None else embedding_dim
    # the CNN's own last FC layer produces the embedding: no separate neck
    return Backbone("small_cnn", SmallCNN(in_channels, d, tuple(widths), hidden, norm), in_channels, d)


def _cifar_resnet(depth: int) -> Callable[..., Backbone]:
    def build(in_channels: int, embedding_dim: int | None, zero_init_residual: bool = False) -> Backbone:
        """torchvision's ResNet with the CIFAR stem of 002 Sec. 4: a 3×3 stride-1 first convolution and no
        max-pool, so a 32×32 image leaves the last stage at 4×4 (as in the POD, LACE and HASeparator papers)."""
        from torchvision import models

        net = getattr(models, f"resnet{depth}")(weights=None, zero_init_residual=zero_init_residual)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
        feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        return Backbone(f"resnet{depth}_cifar", net, in_channels, feature_dim, embedding_dim)

    return build


def _torchvision_resnet(arch: str) -> Callable[..., Backbone]:
    def build(in_channels: int, embedding_dim: int | None, zero_init_residual: bool = False) -> Backbone:
        from torchvision import models

        net = getattr(models, arch)(weights=None, zero_init_residual=zero_init_residual)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        return Backbone(arch, net, in_channels, feature_dim, embedding_dim)

    return build


def _densenet121(in_channels: int, embedding_dim: int | None, memory_efficient: bool = False) -> Backbone:
    from torchvision import models

    net = models.densenet121(weights=None, memory_efficient=memory_efficient)
    if in_channels != 3:
        net.features.conv0 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.features.conv0.weight)
    feature_dim = net.classifier.in_features
    net.classifier = nn.Identity()
    return Backbone("densenet121", net, in_channels, feature_dim, embedding_dim)


def _mobilenet_v2(in_channels: int, embedding_dim: int | None, width_mult: float = 1.0) -> Backbone:
    from torchvision import models

    net = models.mobilenet_v2(weights=None, width_mult=width_mult)
    if in_channels != 3:
        first = net.features[0][0]
        net.features[0][0] = nn.Conv2d(in_channels, first.out_channels, kernel_size=3, stride=2, padding=1,
                                       bias=False)
        nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
    feature_dim = net.last_channel
    net.classifier = nn.Identity()  # its dropout + linear; features → pool → flatten remain
    return Backbone("mobilenet_v2", net, in_channels, feature_dim, embedding_dim)


def _resnet12(in_channels: int, embedding_dim: int | None, widths: tuple[int, ...] = (64, 160, 320, 640),
              drop_rate: float = 0.0) -> Backbone:
    trunk = ResNet12(in_channels, tuple(widths), drop_rate=drop_rate)
    return Backbone("resnet12", trunk, in_channels, trunk.feature_dim, embedding_dim)


# ---------------------------------------------------------------------------------------------- registry

# in one place and in this order, which is the order ``names()`` lists them in: featspace's own, then torchvision's
register_backbone("small_cnn", description="3 strided conv-BN-ReLU stages + 2 FC layers to embedding_dim "
                  "(default 64); trains on CPU in minutes")(_small_cnn)
register_backbone("resnet18_cifar", description="ResNet-18 with the CIFAR stem (3×3 stride-1 conv, no max-pool); "
                  "512-d")(_cifar_resnet(18))
register_backbone("resnet50_cifar", description="ResNet-50 with the CIFAR stem (3×3 stride-1 conv, no max-pool); "
                  "2048-d")(_cifar_resnet(50))
register_backbone("resnet12", description="few-shot ResNet-12 (64-160-320-640, leaky ReLU 0.1, no DropBlock); "
                  "640-d")(_resnet12)
register_backbone("resnet50", description="torchvision ResNet-50 (ImageNet stem), untrained; "
                  "2048-d")(_torchvision_resnet("resnet50"))
register_backbone("resnext50_32x4d", description="torchvision ResNeXt-50 32×4d, untrained; "
                  "2048-d")(_torchvision_resnet("resnext50_32x4d"))
register_backbone("wide_resnet50_2", description="torchvision WideResNet-50-2, untrained; "
                  "2048-d")(_torchvision_resnet("wide_resnet50_2"))
# smaller inputs fail inside the network, at DenseNet-121's 2×2 transitions
register_backbone("densenet121", description="torchvision DenseNet-121, untrained; 1024-d",
                  min_image_size=29)(_densenet121)
register_backbone("mobilenet_v2", description="torchvision MobileNetV2, untrained; 1280-d")(_mobilenet_v2)


def names() -> list[str]:
    """Registered backbone names, in registration order (featspace's own first). ``timm:<name>`` and
    ``torchvision:<name>`` are buildable too (:func:`prefixes`)."""
    return BACKBONES.names()


def prefixes() -> list[tuple[str, str]]:
    """``(prefix, description)`` of the name prefixes that reach a library's models: ``timm:``, ``torchvision:``."""
    return list(external.PREFIXES.items())


def is_known(name: str) -> bool:
    """Whether ``name`` is a registered backbone or carries a library prefix (``timm:``, ``torchvision:``);
    whether the library has that model is checked when it is built."""
    return name in BACKBONES or external.library_of(name) is not None


def describe(name: str) -> str:
    """One-line description of a backbone, with its native feature width."""
    library = external.library_of(name)
    if library is not None:
        return f"{library} model {name.split(':', 1)[1]!r} (pooled features; see 'featspace list backbones')"
    return BACKBONES.describe(name)


def _unknown(name: str) -> ValueError:
    hint = "; or timm:<name>, torchvision:<name> for any model of those libraries"
    if name.startswith(MODULE_PREFIX):
        hint += (f"; {name!r} was a ready nn.Module given to featspace.train.train(config, backbone=...): register a "
                 f"factory under that name (featspace.models.register_backbone({name!r})) in a module and pass it with "
                 "--import MODULE")
    return ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(names())}{hint}")


def build_backbone(name: str, *, in_channels: int, embedding_dim: int | None = None, image_size: int = 32,
                   initial_weights: bool = True, **kwargs: Any) -> Backbone:
    """Build backbone ``name`` for images with ``in_channels`` channels and side ``image_size``.

    name: a registered name (``names()``), ``timm:<model>`` (any ``timm.list_models()`` name, a pretrained tag
        allowed: ``timm:resnet50.a1_in1k``) or ``torchvision:<model>`` (any of
        ``torchvision.models.list_models(module=torchvision.models)``); see ``featspace.models.external``.
    embedding_dim: the output width D; for all but ``small_cnn`` a linear neck maps the native features
        to it, and None keeps the native width. ``small_cnn`` ends in its own FC layer of width D
        (default 64).
    image_size: the input side the backbone will see; checked against the smallest size the network
        accepts (DenseNet-121's transitions need at least 29 pixels).
    initial_weights: load the initial weights the options name (``pretrained``, ``weights``); False builds the same
        network (and ``data_config``) without reading them — for a model whose checkpoint replaces them anyway
        (``featspace eval``, ``--resume``), so that it needs neither the internet nor the original weights file.
    kwargs: backbone options (``small_cnn``: widths, hidden, norm ("batch" | "none"); ``resnet12``: widths,
        drop_rate; torchvision ResNets: zero_init_residual; ``densenet121``: memory_efficient;
        ``mobilenet_v2``: width_mult; ``timm:``/``torchvision:``: pretrained and the library's own keyword
        arguments). Every backbone takes ``weights``: the path of a ``.pth``/``.safetensors`` state dict loaded
        into the trunk (``featspace.models.weights``), unless its factory has a ``weights`` option of its own.

    Raises ``ValueError`` for an unknown name or option (listing the valid ones), bad sizes and unusable weights.
    """
    for arg, value in (("in_channels", in_channels), ("image_size", image_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if embedding_dim is not None and (not isinstance(embedding_dim, int) or isinstance(embedding_dim, bool)
                                      or embedding_dim < 1):
        raise ValueError(f"embedding_dim must be a positive int or None, got {embedding_dim!r}")
    if external.library_of(name) is not None:
        trunk, feature_dim, data_config = external.build(name, in_channels, image_size=image_size,
                                                         initial_weights=initial_weights, **kwargs)
        return Backbone(name, trunk, in_channels, feature_dim, embedding_dim, data_config=data_config)
    if name not in BACKBONES:
        raise _unknown(name)
    entry = BACKBONES.entry(name)
    min_image_size = entry.extras.get("min_image_size", 1)
    if image_size < min_image_size:
        raise ValueError(f"{name} needs images of at least {min_image_size}×{min_image_size} pixels, "
                         f"got {image_size}; use a smaller backbone (small_cnn, resnet12, resnet18_cifar)")
    options = BACKBONES.parameters(name)
    weights = kwargs.pop("weights", None) if "weights" not in options else None
    if "image_size" in options:
        kwargs = {**kwargs, "image_size": image_size}  # a factory that sizes layers by the input gets it
    model = BACKBONES.build(name, in_channels, embedding_dim, **kwargs)
    # a user's factory (register_backbone) may return anything; the trainer relies on Backbone's attributes
    if not isinstance(model, Backbone):
        raise TypeError(f"backbone factory {name!r} returned {type(model).__name__}, not a Backbone; wrap the network "
                        "as Backbone(name, trunk, in_channels, feature_dim, embedding_dim)")
    if weights is not None and initial_weights:
        load_trunk_weights(model.trunk, weights, owner=name)
    return model


def module_name(module: nn.Module) -> str:
    """The backbone name a ready module trains under: a :class:`Backbone`'s own, else ``module:<ClassName>``."""
    return module.name if isinstance(module, Backbone) else f"{MODULE_PREFIX}{type(module).__name__}"


def wrap_module(module: nn.Module, *, in_channels: int, embedding_dim: int | None = None,
                image_size: int = 32) -> Backbone:
    """A ready ``nn.Module`` mapping ``[B, in_channels, H, W]`` to features ``[B, F]`` as a :class:`Backbone`
    named ``module:<ClassName>``, with the neck to ``embedding_dim`` as for any backbone.

    F is the module's ``feature_dim`` attribute when it has one, else the width of one dry forward of two zero
    images of side ``image_size`` (in eval mode and without gradients, so batch-norm statistics are untouched).
    A :class:`Backbone` is returned as it is.
    """
    if isinstance(module, Backbone):
        if module.in_channels != in_channels:
            raise ValueError(f"backbone {module.name!r} takes {module.in_channels}-channel images; the data has "
                             f"{in_channels} channels")
        return module
    if not isinstance(module, nn.Module):
        raise ValueError(f"a backbone must be a torch.nn.Module, got {type(module).__name__}")
    name = module_name(module)
    feature_dim = getattr(module, "feature_dim", None)
    if feature_dim is None:
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                out = module(torch.zeros(2, in_channels, image_size, image_size, device=device))
        finally:
            module.train(was_training)
        if not isinstance(out, Tensor) or out.ndim != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"backbone {name}: images [B, {in_channels}, {image_size}, {image_size}] gave {shape}, "
                             "not features [B, F]; end the module with pooling and a flatten")
        feature_dim = int(out.shape[1])
    if not isinstance(feature_dim, int) or isinstance(feature_dim, bool) or feature_dim < 1:
        raise ValueError(f"backbone {name}: feature_dim must be a positive int, got {feature_dim!r}")
    return Backbone(name, module, in_channels, feature_dim, embedding_dim)
