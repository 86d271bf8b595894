"""Backbones: output shapes, the neck, channel adaptation, the architectures' parameter counts (checked
against counts derived from their published layer lists), and clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featspace import models
from featspace.models import build_backbone

TORCHVISION = ["resnet50", "resnext50_32x4d", "wide_resnet50_2", "densenet121", "mobilenet_v2"]

# torchvision's ImageNet models with their classifiers removed: total parameters − (features·1000 + 1000)
TRUNK_PARAMS = {
    "resnet50": 25_557_032 - 2_049_000,
    "resnext50_32x4d": 25_028_904 - 2_049_000,
    "wide_resnet50_2": 68_883_240 - 2_049_000,
    "densenet121": 7_978_856 - 1_025_000,
    "mobilenet_v2": 3_504_872 - 1_281_000,
    # CIFAR stem: the 7×7×3×64 first conv becomes 3×3×3×64 (the counts of the usual CIFAR ResNet code)
    "resnet18_cifar": 11_689_512 - 513_000 - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64,
    "resnet50_cifar": 25_557_032 - 2_049_000 - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64,
}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def resnet12_params(in_channels=3, widths=(64, 160, 320, 640)):
    """Three 3×3 convs, a 1×1 shortcut conv and four BatchNorms (weight + bias) per block."""
    total, planes = 0, in_channels
    for w in widths:
        total += 9 * planes * w + 2 * 9 * w * w + planes * w + 4 * 2 * w
        planes = w
    return total


def test_registry():
    expected = {"small_cnn", "resnet18_cifar", "resnet50_cifar", "resnet12", *TORCHVISION}
    assert set(models.names()) == expected
    for name in expected:
        assert models.describe(name) and "\n" not in models.describe(name)


def test_errors_list_the_valid_choices():
    with pytest.raises(ValueError, match="valid backbones: .*small_cnn.*resnet12"):
        build_backbone("vgg16", in_channels=3)
    with pytest.raises(ValueError, match="valid options: widths, hidden"):
        build_backbone("small_cnn", in_channels=1, depth=7)
    with pytest.raises(ValueError, match="in_channels"):
        build_backbone("small_cnn", in_channels=0)
    with pytest.raises(ValueError, match="embedding_dim"):
        build_backbone("small_cnn", in_channels=1, embedding_dim=0)
    with pytest.raises(ValueError, match="at least 29"):
        build_backbone("densenet121", in_channels=1, image_size=28)
    with pytest.raises(ValueError, match=r"expected images \[B, 1, H, W\]"):
        build_backbone("small_cnn", in_channels=1)(torch.zeros(2, 3, 8, 8))


@pytest.mark.parametrize("d", [2, 4, None])
@pytest.mark.parametrize("channels,size", [(1, 28), (1, 8), (3, 32)])
def test_small_cnn_shapes(d, channels, size):
    model = build_backbone("small_cnn", in_channels=channels, embedding_dim=d, image_size=size)
    out = model(torch.randn(5, channels, size, size))
    assert out.shape == (5, d or 64) and model.embedding_dim == (d or 64)
    assert isinstance(model.neck, nn.Identity)  # its own last FC layer is the embedding


def test_small_cnn_learns_digits_sized_batches():
    torch.manual_seed(0)
    model = build_backbone("small_cnn", in_channels=1, embedding_dim=4)
    head = nn.Linear(4, 10)
    x, y = torch.randn(64, 1, 8, 8), torch.arange(64) % 10
    x = x + y.view(-1, 1, 1, 1).float() / 3  # a learnable signal
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(head(model(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_resnet12_is_the_few_shot_architecture():
    model = build_backbone("resnet12", in_channels=3)
    assert model.feature_dim == model.embedding_dim == 640
    assert n_params(model) == resnet12_params() == 12_424_320
    convs3 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs3) == 12 and [c.out_channels for c in convs3[::3]] == [64, 160, 320, 640]
    maps = []
    model.trunk.blocks[-1].register_forward_hook(lambda m, i, o: maps.append(o.shape))
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 84, 84))
    assert out.shape == (1, 640) and maps[0] == (1, 640, 5, 5)  # 84 → 42 → 21 → 10 → 5, as in MetaOptNet


@pytest.mark.parametrize("channels,size", [(1, 28), (1, 8), (3, 32)])
def test_resnet12_small_inputs_and_neck(channels, size):
    model = build_backbone("resnet12", in_channels=channels, embedding_dim=32, widths=(8, 16, 16, 24))
    assert model.feature_dim == 24 and model.embedding_dim == 32 and isinstance(model.neck, nn.Linear)
    assert model(torch.randn(3, channels, size, size)).shape == (3, 32)
    assert n_params(model.trunk) == resnet12_params(channels, (8, 16, 16, 24))


def test_resnet18_cifar_stem_neck_and_gray_input():
    model = build_backbone("resnet18_cifar", in_channels=3)
    assert model.embedding_dim == 512 and n_params(model) == TRUNK_PARAMS["resnet18_cifar"]
    conv1 = model.trunk.conv1
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and isinstance(model.trunk.maxpool, nn.Identity)
    gray = build_backbone("resnet18_cifar", in_channels=1, embedding_dim=64)
    assert gray.trunk.conv1.in_channels == 1 and gray.neck.in_features == 512 and gray.neck.out_features == 64
    out = gray(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 64)
    out.sum().backward()
    assert all(p.grad is not None for p in gray.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name,channels", [("resnet50_cifar", 3), ("resnet50", 3), ("resnext50_32x4d", 1),
                                           ("wide_resnet50_2", 3), ("densenet121", 1), ("mobilenet_v2", 3),
                                           ("mobilenet_v2", 1)])
def test_larger_backbones_one_forward(name, channels):
    model = build_backbone(name, in_channels=channels, embedding_dim=16)
    native = {"densenet121": 1024, "mobilenet_v2": 1280}.get(name, 2048)
    assert model.feature_dim == native and model.embedding_dim == 16
    first_conv = next(m for m in model.trunk.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == channels
    if channels == 3:  # the torchvision architecture itself, classifier removed (plus the 2048·16 + 16 neck)
        assert n_params(model.trunk) == TRUNK_PARAMS[name]
    with torch.no_grad():
        out = model.eval()(torch.randn(2, channels, 32, 32))
    assert out.shape == (2, 16) and torch.isfinite(out).all()


@pytest.fixture
def tiny_backbone():
    """A user backbone registered through the public decorator, removed again after the test."""

    @models.register_backbone("test_tiny_mlp", description="flatten + one linear layer", min_image_size=4)
    def tiny_mlp(in_channels: int, embedding_dim: int | None, image_size: int = 8, width: int = 16):
        trunk = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, width))
        return models.Backbone("test_tiny_mlp", trunk, in_channels, width, embedding_dim)

    yield tiny_mlp
    models.backbones.BACKBONES.unregister("test_tiny_mlp")


def test_register_backbone_makes_a_user_factory_buildable(tiny_backbone):
    assert "test_tiny_mlp" in models.names()
    assert models.describe("test_tiny_mlp") == "flatten + one linear layer"
    model = build_backbone("test_tiny_mlp", in_channels=1, embedding_dim=3, image_size=6, width=5)
    assert model.feature_dim == 5 and model.embedding_dim == 3
    assert model(torch.randn(2, 1, 6, 6)).shape == (2, 3)  # image_size reached the factory
    native = build_backbone("test_tiny_mlp", in_channels=3, image_size=8)
    assert native.embedding_dim == 16 and isinstance(native.neck, nn.Identity)
    # the same checks as the built-in backbones: options from the signature, the smallest image size
    with pytest.raises(ValueError, match="valid options: image_size, width"):
        build_backbone("test_tiny_mlp", in_channels=1, depth=2)
    with pytest.raises(ValueError, match="at least 4"):
        build_backbone("test_tiny_mlp", in_channels=1, image_size=2)


def test_register_backbone_refuses_a_taken_name_and_a_non_backbone(tiny_backbone):
    with pytest.raises(ValueError, match="already registered"):
        models.register_backbone("small_cnn")(lambda in_channels, embedding_dim: None)
    models.register_backbone("test_tiny_mlp")(tiny_backbone)  # the same factory again: a no-op
    models.register_backbone("test_not_a_backbone")(lambda in_channels, embedding_dim: nn.Identity())
    try:
        with pytest.raises(TypeError, match="not a Backbone"):
            build_backbone("test_not_a_backbone", in_channels=1)
    finally:
        models.backbones.BACKBONES.unregister("test_not_a_backbone")
    assert "test_not_a_backbone" not in models.names()
