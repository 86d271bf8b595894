"""backbone_params.weights: a local state dict loaded into any backbone's trunk, as data only, with one-line
errors naming the keys that do not fit."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from featspace.models import build_backbone, read_state_dict


def _trunk_state(**options):
    torch.manual_seed(1)
    return build_backbone("small_cnn", in_channels=3, embedding_dim=8, **options).trunk.state_dict()


def _assert_loaded(model, state):
    for key, tensor in state.items():
        assert torch.equal(model.trunk.state_dict()[key], tensor), key


@pytest.mark.parametrize("layout", ["bare", "state_dict", "model", "ddp", "featspace", "safetensors"])
def test_every_accepted_layout_loads_into_the_trunk(tmp_path, layout):
    state = _trunk_state()
    saved = {"bare": state, "state_dict": {"state_dict": state, "epoch": 3}, "model": {"model": state},
             "ddp": {f"module.{k}": v for k, v in state.items()},
             "featspace": {"state_dict": {**{f"backbone.trunk.{k}": v for k, v in state.items()},
                                          "backbone.neck.weight": torch.zeros(1), "head.weight": torch.zeros(1)}},
             "safetensors": state}[layout]
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pth")
    if layout == "safetensors":
        save_file(saved, path)
    else:
        torch.save(saved, path)
    torch.manual_seed(2)  # another initialisation, which the file must replace
    model = build_backbone("small_cnn", in_channels=3, embedding_dim=8, weights=str(path))
    _assert_loaded(model, state)
    torch.manual_seed(2)
    skipped = build_backbone("small_cnn", in_channels=3, embedding_dim=8, weights=str(tmp_path / "gone.pth"),
                             initial_weights=False)  # a model rebuilt for its checkpoint needs no file
    assert not torch.equal(skipped.trunk.state_dict()["features.0.weight"], state["features.0.weight"])


def test_a_three_channel_first_conv_is_adapted_to_gray_images(tmp_path):
    state = _trunk_state()
    torch.save(state, tmp_path / "rgb.pth")
    gray = build_backbone("small_cnn", in_channels=1, embedding_dim=8, weights=str(tmp_path / "rgb.pth"))
    torch.testing.assert_close(gray.trunk.state_dict()["features.0.weight"],
                               state["features.0.weight"].sum(1, keepdim=True))  # timm's adapt_input_conv
    assert torch.equal(gray.trunk.state_dict()["embed.3.weight"], state["embed.3.weight"])


def test_a_torchvision_file_with_its_classifier_fits_the_trunk(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")  # fc.weight / fc.bias included
    model = build_backbone("torchvision:resnet18", in_channels=3, weights=str(tmp_path / "resnet18.pth"))
    assert torch.equal(model.trunk.layer2[1].conv1.weight, reference.layer2[1].conv1.weight)
    assert model.data_config["input_size"] == 224 and model.data_config["crop_pct"] == pytest.approx(0.875)


def test_a_file_of_another_architecture_names_the_keys(tmp_path):
    state = _trunk_state(widths=(8, 16, 32))
    torch.save({"state_dict": state}, tmp_path / "narrow.pth")
    with pytest.raises(ValueError, match=r"backbone_params.weights: .*narrow.pth does not fit small_cnn's trunk: "
                                         r"shape mismatch \(file vs model\) embed.0.weight \[128, 512\] vs "
                                         r"\[128, 1024\]") as err:
        build_backbone("small_cnn", in_channels=3, embedding_dim=8, weights=str(tmp_path / "narrow.pth"))
    assert "\n" not in str(err.value)
    partial = {k: v for k, v in _trunk_state().items() if not k.startswith("embed.")}
    torch.save({**partial, "extra.weight": torch.zeros(2)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"missing keys embed.0.weight, .*; unexpected keys extra.weight"):
        build_backbone("small_cnn", in_channels=3, embedding_dim=8, weights=str(tmp_path / "partial.pth"))


class Payload:
    """Not a tensor: what a weights-only load must refuse to construct."""


@pytest.mark.parametrize("write, match", [
    (None, "no file at"),
    (lambda p: p.write_bytes(b"\x00garbage" * 10), "is not a readable torch file"),
    (lambda p: torch.save({"w": Payload()}, p), "holds something other than tensors and plain data"),
    (lambda p: torch.save({"w": [1, 2]}, p), r"is not a state dict: w not tensors"),
    (lambda p: torch.save([], p), "holds no state dict"),
])
def test_unusable_files_are_one_line_errors(tmp_path, write, match):
    path = tmp_path / "w.pth"
    if write is not None:
        write(path)
    with pytest.raises(ValueError, match=match) as err:
        build_backbone("small_cnn", in_channels=3, weights=str(path))
    assert "\n" not in str(err.value) and "backbone_params.weights" in str(err.value)


def test_suffixes_and_safetensors_errors(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"must end in .safetensors or one of .pth, .pt, .bin, .ckpt"):
        read_state_dict(tmp_path / "w.npz")
    (tmp_path / "w.safetensors").write_bytes(b"\x05not safetensors")
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        read_state_dict(tmp_path / "w.safetensors")
