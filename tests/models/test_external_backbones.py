"""timm:<name> and torchvision:<name> backbones: the trunk each library builds (classifier removed, channels
adapted), the published weights through the libraries' own loaders from files the tests write (no internet
here), the one-line error where they cannot be fetched, and ``data_config`` from the pretrained config."""

from __future__ import annotations

import os
import urllib.error
from unittest import mock

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from featspace import models
from featspace.models import build_backbone


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_timm_model_is_the_pooled_trunk_with_the_neck():
    model = build_backbone("timm:resnet18", in_channels=3, embedding_dim=16)
    reference = timm.create_model("resnet18")
    assert model.name == "timm:resnet18" and model.feature_dim == 512 and model.embedding_dim == 16
    assert n_params(model.trunk) == n_params(reference) - (512 * 1000 + 1000)  # timm removed its classifier
    assert isinstance(model.neck, nn.Linear) and model.data_config is None  # untrained: the data's statistics
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    gray = build_backbone("timm:resnet18", in_channels=1)
    assert gray.trunk.conv1.in_channels == 1 and gray(torch.randn(2, 1, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize("name, width", [("mobilenet_v3_small", 1024), ("squeezenet1_1", 512)])
def test_torchvision_model_loses_its_last_classifier_layer(name, width):
    model = build_backbone(f"torchvision:{name}", in_channels=1, embedding_dim=8)
    reference = torchvision.models.get_model(name)
    assert model.feature_dim == width
    first = next(m for m in model.trunk.modules() if isinstance(m, nn.Conv2d))
    first_reference = next(m for m in reference.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1 and first.out_channels == first_reference.out_channels
    # the classifier's last layer (1000 outputs) is all that is gone, and the first conv has 1 input channel
    removed = width * 1000 + 1000 + first_reference.weight[:, 1:].numel()
    assert n_params(model.trunk) == n_params(reference) - removed
    model.train()
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 8)


def test_googlenet_trains_without_its_auxiliary_classifiers():
    # init_weights=False: a get_model option passed through (torchvision's SciPy initialisation takes seconds)
    model = build_backbone("torchvision:googlenet", in_channels=3, init_weights=False).train()
    out = model(torch.randn(2, 3, 64, 64))  # a tensor, not GoogLeNetOutputs with aux logits
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1024) and model.trunk.aux1 is None


@pytest.mark.parametrize("name, options, match", [
    ("timm:resnet_18", {}, r"unknown timm model 'resnet_18'; did you mean resnet18"),
    ("torchvision:resnet_18", {}, r"unknown torchvision classification model 'resnet_18'; did you mean resnet18"),
    ("torchvision:fasterrcnn_resnet50_fpn", {}, "unknown torchvision classification model"),
    ("timm:", {}, "names no model"),
    ("timm:resnet18", {"depth": 3}, r"timm:resnet18: .*unexpected keyword argument 'depth'.*timm.create_model"),
    ("torchvision:resnet18", {"depth": 3}, r"unexpected keyword argument 'depth'.*get_model"),
    ("timm:resnet18", {"num_classes": 10}, "num_classes is set by featspace"),
    ("timm:resnet18", {"pretrained": "yes"}, "pretrained must be a bool"),
    ("timm:resnet18", {"weights": 3}, "weights must be the path"),
    ("torchvision:resnet18", {"pretrained": True, "weights": "w.pth"}, "not both"),
    ("vgg16", {}, r"unknown backbone 'vgg16'.*or timm:<name>, torchvision:<name>"),
])
def test_bad_names_and_options_are_one_line_errors(name, options, match):
    with pytest.raises(ValueError, match=match) as err:
        build_backbone(name, in_channels=3, **options)
    assert "\n" not in str(err.value)


def _check_data_config(config, *, channels, interpolation, crop_pct):
    assert set(config) == {"mean", "std", "input_size", "interpolation", "crop_pct"}
    assert isinstance(config["mean"], tuple) and len(config["mean"]) == channels
    assert isinstance(config["std"], tuple) and all(isinstance(v, float) for v in config["mean"] + config["std"])
    assert config["input_size"] == 224 and isinstance(config["input_size"], int)
    assert config["interpolation"] == interpolation and config["crop_pct"] == pytest.approx(crop_pct)


def test_timm_pretrained_goes_through_timms_loader_with_a_local_file(tmp_path):
    """timm's own loader (``pretrained=True``) reads a file named by ``pretrained_cfg_overlay`` instead of the
    Hub: the weights land in the trunk, the classifier is dropped and the first conv is summed over RGB."""
    reference = timm.create_model("resnet18")
    save_file(reference.state_dict(), tmp_path / "resnet18.safetensors")
    model = build_backbone("timm:resnet18", in_channels=1, pretrained=True,
                           pretrained_cfg_overlay={"file": str(tmp_path / "resnet18.safetensors")})
    torch.testing.assert_close(model.trunk.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.trunk.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    _check_data_config(model.data_config, channels=1, interpolation="bicubic", crop_pct=0.95)
    mean, std = timm.data.IMAGENET_DEFAULT_MEAN, timm.data.IMAGENET_DEFAULT_STD
    assert model.data_config["mean"] == pytest.approx((sum(mean) / 3,))
    assert model.data_config["std"] == pytest.approx((sum(std) / 3,))
    rgb = build_backbone("timm:resnet18", in_channels=3, weights=str(tmp_path / "resnet18.safetensors"))
    assert torch.equal(rgb.trunk.conv1.weight, reference.conv1.weight)  # weights=PATH: the same file, our loader
    assert rgb.data_config["mean"] == pytest.approx(mean)


def _torch_home(tmp_path, monkeypatch, name):
    """torchvision's cache, $TORCH_HOME/hub/checkpoints/<the DEFAULT weights' file name>, holding an untrained
    network's state dict (as a download would leave it)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    return weights, cached


def test_torchvision_pretrained_reads_torchs_hub_cache_weights_only(tmp_path, monkeypatch):
    _, cached = _torch_home(tmp_path, monkeypatch, "resnet18")
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), cached)
    model = build_backbone("torchvision:resnet18", in_channels=3, pretrained=True)
    assert torch.equal(model.trunk.layer3[0].conv2.weight, reference.layer3[0].conv2.weight)
    _check_data_config(model.data_config, channels=3, interpolation="bilinear", crop_pct=224 / 256)
    gray = build_backbone("torchvision:resnet18", in_channels=1, pretrained=True)
    torch.testing.assert_close(gray.trunk.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") is None  # set only while torchvision loads
    # torchvision itself would unpickle anything from its cache (torch.hub's weights_only=False); not here
    torch.save({"fc.weight": torch.zeros(1), "code": torch.nn.ReLU()}, cached)
    with pytest.raises(ValueError, match="holds something other than tensors"):
        build_backbone("torchvision:resnet18", in_channels=3, pretrained=True)


def test_no_internet_is_one_line_suggesting_a_weights_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    with mock.patch("torch.hub.download_url_to_file", offline), \
            pytest.raises(ValueError, match=r"torchvision:resnet18: could not fetch its published weights \(URLError"
                                            r".*backbone_params.weights=PATH") as err:
        build_backbone("torchvision:resnet18", in_channels=3, pretrained=True)
    assert "\n" not in str(err.value)
    from huggingface_hub.errors import LocalEntryNotFoundError

    def hub_offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache; check your connection")

    with mock.patch("timm.models._hub.hf_hub_download", hub_offline), \
            pytest.raises(ValueError, match=r"timm:resnet18: could not fetch.*LocalEntryNotFoundError.*"
                                            "backbone_params.weights=PATH"):
        build_backbone("timm:resnet18", in_channels=3, pretrained=True)
    # a model rebuilt for its checkpoint (eval, resume) reads no weights, so it needs no internet
    with mock.patch("timm.models._hub.hf_hub_download", hub_offline):
        again = build_backbone("timm:resnet18", in_channels=3, pretrained=True, initial_weights=False)
    assert again.data_config["input_size"] == 224


def test_prefixes_are_listed_and_described():
    listed = dict(models.prefixes())
    assert set(listed) == {"timm:", "torchvision:"} and all("pretrained" in text for text in listed.values())
    assert models.is_known("timm:anything") and models.is_known("small_cnn") and not models.is_known("mine")
    assert "timm model 'resnet18'" in models.describe("timm:resnet18")
