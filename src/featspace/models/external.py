"""Any timm or torchvision classification model as a trunk: ``timm:<name>``, ``torchvision:<name>``.

- ``timm:<name>`` — ``timm.create_model(name, num_classes=0, in_chans=C, **options)``: timm removes the
  classifier itself and returns the pooled features (``head_hidden_size``, else ``num_features``, wide). A
  pretrained tag may follow the name (``timm:resnet50.a1_in1k``); options are ``timm.create_model``'s keyword
  arguments (``drop_path_rate``, ``img_size``, ``pretrained_cfg_overlay``, ...).
- ``torchvision:<name>`` — ``torchvision.models.get_model(name, **options)`` for the classification models
  (``torchvision.models.list_models(module=torchvision.models)``); the last linear layer of its classifier
  (``fc``, ``classifier``, ``heads`` or ``head``; the final 1×1 convolution for SqueezeNet) becomes the identity,
  so the features are what that layer saw, and its first convolution is rebuilt for C ≠ 3 input channels.
  GoogLeNet and Inception-v3 are built without their auxiliary classifiers.

``pretrained: true`` loads the published weights through the library's own mechanism and cache (timm: the
Hugging Face Hub or its URL, ``$HF_HOME``; torchvision: ``torch.hub`` under ``$TORCH_HOME/hub/checkpoints``),
downloading where there is internet; the first convolution is adapted to C channels as timm does
(``timm.models.adapt_input_conv``: summed over RGB for grayscale). torchvision's files are read with
``weights_only`` forced (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``), as every file featspace reads. ``weights: PATH``
loads a local state dict instead (``featspace.models.weights``).

With either, the model's pretrained config says how its input must look, returned as the backbone's
``data_config`` (``featspace.models.Backbone``): timm's ``timm.data.resolve_model_data_config``, torchvision's
``weights.transforms()`` of the model's DEFAULT weights.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import pickle
from collections.abc import Iterator
from typing import Any

from torch import nn

from featspace.models.weights import load_trunk_weights

__all__ = ["PREFIXES", "build", "check_model", "library_of"]

#: name prefix -> what ``featspace list backbones`` says of it
PREFIXES = {
    "timm:": "any timm model (timm.list_models()), pooled features, classifier removed; options: pretrained "
             "(true: the published weights), weights (a local .pth/.safetensors), timm.create_model's own",
    "torchvision:": "any torchvision classification model (torchvision.models.list_models()), its classifier "
                    "replaced by the identity; options: pretrained, weights, get_model's own",
}
#: children of a torchvision classification model that hold its classifier (the last one present is it)
_CLASSIFIER_ATTRS = ("fc", "classifier", "heads", "head")
#: torchvision's auxiliary classifiers, absent here and left out of a weights file
_AUX_ATTRS = ("AuxLogits", "aux1", "aux2")


def library_of(name: str) -> str | None:
    """``"timm"`` or ``"torchvision"`` for a name with that prefix, else None."""
    if isinstance(name, str):
        for prefix in PREFIXES:
            if name.startswith(prefix):
                return prefix[:-1]
    return None


def _one_line(err: BaseException, limit: int = 200) -> str:
    return " ".join(str(err).split())[:limit]


def _fetch_failed(err: BaseException) -> bool:
    """Whether an exception says the weights could not be fetched (no internet, no cached copy)."""
    if isinstance(err, (OSError, ConnectionError, TimeoutError)):
        return True
    return any(cls.__module__.split(".")[0] in ("huggingface_hub", "httpx", "requests", "urllib3")
               for cls in type(err).__mro__)


def _refused(name: str, err: BaseException) -> ValueError:
    return ValueError(f"{name}: the published weights file in the library's cache holds something other than "
                      f"tensors, so it was not loaded ({_one_line(err, 120)}); delete it and fetch it again, or pass "
                      "backbone_params.weights=PATH")


def _offline_error(name: str, err: BaseException) -> ValueError:
    return ValueError(f"{name}: could not fetch its published weights ({type(err).__name__}: {_one_line(err, 120)}); "
                      "without internet, pass a local copy as backbone_params.weights=PATH (a .pth or .safetensors "
                      "state dict) instead of backbone_params.pretrained")


def _close(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _channels(values: Any, in_channels: int) -> tuple[float, ...]:
    """Per-channel statistics of 3-channel pretraining for ``in_channels`` channels (their mean when they differ:
    grayscale input to a first convolution whose weights were summed over RGB)."""
    values = tuple(float(v) for v in values)
    if len(values) == in_channels:
        return values
    return (sum(values) / len(values),) * in_channels


def check_model(name: str) -> None:
    """``ValueError`` (with the closest names) unless the library of ``timm:<model>`` / ``torchvision:<model>``
    has that model; imports the library."""
    library, model = name.split(":", 1)
    if not model:
        raise ValueError(f"backbone {name!r} names no model; e.g. {library}:resnet18")
    if library == "timm":
        import timm

        if not timm.is_model(model):
            raise ValueError(f"unknown timm model {model!r}{_close(model.split('.')[0], timm.list_models())} "
                             "(timm.list_models('*resnet*') lists them)")
    else:
        from torchvision import models

        known = models.list_models(module=models)
        if model not in known:
            raise ValueError(f"unknown torchvision classification model {model!r}{_close(model, known)} "
                             "(torchvision.models.list_models(module=torchvision.models) lists them)")


def build(name: str, in_channels: int, *, image_size: int, initial_weights: bool = True,
          **options: Any) -> tuple[nn.Module, int, dict[str, Any] | None]:
    """``(trunk, feature_dim, data_config)`` for ``timm:<model>`` or ``torchvision:<model>`` (module docstring)."""
    library, model = name.split(":", 1)
    pretrained = options.pop("pretrained", False)
    weights = options.pop("weights", None)
    if not isinstance(pretrained, bool):
        raise ValueError(f"backbone_params.pretrained must be a bool (True or False), got {pretrained!r}")
    if weights is not None and (not isinstance(weights, str) or not weights.strip()):
        raise ValueError(f"backbone_params.weights must be the path of a .pth or .safetensors file, got {weights!r}")
    if pretrained and weights is not None:
        raise ValueError(f"{name}: give backbone_params.pretrained or backbone_params.weights, not both")
    check_model(name)
    builder = _timm if library == "timm" else _torchvision
    return builder(model, in_channels, pretrained=pretrained, weights=weights, initial_weights=initial_weights,
                   options=options)


# ------------------------------------------------------------------------------------------------- timm
def _timm(model: str, in_channels: int, *, pretrained: bool, weights: str | None, initial_weights: bool,
          options: dict[str, Any]) -> tuple[nn.Module, int, dict[str, Any] | None]:
    import timm

    name = f"timm:{model}"
    for reserved in ("num_classes", "in_chans"):
        if reserved in options:
            raise ValueError(f"{name}: backbone_params.{reserved} is set by featspace (num_classes=0: pooled features; "
                             "in_chans: the data's channels)")
    load = pretrained and initial_weights
    try:
        net = timm.create_model(model, pretrained=load, num_classes=0, in_chans=in_channels, **options)
    except TypeError as err:
        raise ValueError(f"{name}: {_one_line(err)} (backbone_params go to timm.create_model)") from None
    except pickle.UnpicklingError as err:
        raise _refused(name, err) from None
    except Exception as err:
        if load and _fetch_failed(err):
            raise _offline_error(name, err) from None
        if load and "No pretrained weights" in str(err):
            raise ValueError(f"{name} has no published weights; drop backbone_params.pretrained or pass "
                             "backbone_params.weights=PATH") from None
        if isinstance(err, (RuntimeError, ValueError, AssertionError)):
            raise ValueError(f"{name}: {_one_line(err)}") from None
        raise
    feature_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
    data_config = None
    if pretrained or weights is not None:
        from timm.data import resolve_model_data_config

        config = resolve_model_data_config(net)
        data_config = {"mean": _channels(config["mean"], in_channels), "std": _channels(config["std"], in_channels),
                       "input_size": int(config["input_size"][-1]), "interpolation": str(config["interpolation"]),
                       "crop_pct": float(config["crop_pct"])}
    if weights is not None and initial_weights:
        classifier = net.pretrained_cfg.get("classifier") or ()
        ignore = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        load_trunk_weights(net, weights, owner=name, ignore=ignore)
    return net, feature_dim, data_config


# ------------------------------------------------------------------------------------------ torchvision
@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """torch.load with weights_only=True inside, whatever the caller passes (torch.hub's default is False)."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def _replace(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def _drop_classifier(net: nn.Module, name: str) -> tuple[str, int]:
    """Replace the classifier's last linear layer (SqueezeNet: its 1×1 convolution) by the identity; returns its
    state-dict prefix and input width (the feature width)."""
    children = [n for n, _ in net.named_children() if n in _CLASSIFIER_ATTRS]
    if not children:
        raise ValueError(f"{name}: no classifier ({', '.join(_CLASSIFIER_ATTRS)}) found to remove; it is not a "
                         "classification model")
    attr = children[-1]
    block = getattr(net, attr)
    layers = [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Linear)]
    if layers:
        path, layer = layers[-1]
        width = layer.in_features
    else:
        convs = [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"{name}: its classifier {attr!r} has no linear or convolution layer to remove")
        path, layer = convs[-1]
        width = layer.in_channels
    full = f"{attr}.{path}" if path else attr
    _replace(net, full, nn.Identity())
    return full, int(width)


def _adapt_first_conv(net: nn.Module, in_channels: int, *, keep_weights: bool) -> None:
    """Rebuild the first convolution for ``in_channels`` channels: its pretrained weights adapted as timm adapts
    them, or a fresh Kaiming initialisation."""
    found = next(((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        return
    path, conv = found
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=1, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    if keep_weights:
        from timm.models import adapt_input_conv

        new.weight.data.copy_(adapt_input_conv(in_channels, conv.weight.data))
        if conv.bias is not None:
            new.bias.data.copy_(conv.bias.data)
    else:
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    _replace(net, path, new)
    if hasattr(net, "transform_input"):  # GoogLeNet / Inception re-normalise 3 RGB channels in forward
        net.transform_input = False


def _torchvision(model: str, in_channels: int, *, pretrained: bool, weights: str | None, initial_weights: bool,
                 options: dict[str, Any]) -> tuple[nn.Module, int, dict[str, Any] | None]:
    from torchvision import models

    name = f"torchvision:{model}"
    if "num_classes" in options:
        raise ValueError(f"{name}: backbone_params.num_classes is set by featspace (the classifier is removed)")
    published = models.get_model_weights(model).DEFAULT if (pretrained or weights is not None) else None
    load = pretrained and initial_weights
    kwargs = dict(options)
    if model in ("googlenet", "inception_v3"):
        if not load:  # with weights torchvision drops the auxiliary classifiers itself
            kwargs.setdefault("aux_logits", False)
        if pretrained:  # as torchvision builds them for their published weights
            kwargs.setdefault("transform_input", True)
    try:
        if load:
            with _weights_only_loads():
                net = models.get_model(model, weights=published, **kwargs)
        else:
            net = models.get_model(model, weights=None, **kwargs)
    except TypeError as err:
        raise ValueError(f"{name}: {_one_line(err)} (backbone_params go to torchvision.models.get_model)") from None
    except pickle.UnpicklingError as err:  # weights_only refused the cached file
        raise _refused(name, err) from None
    except Exception as err:
        if load and _fetch_failed(err):
            raise _offline_error(name, err) from None
        if isinstance(err, (RuntimeError, ValueError)):
            raise ValueError(f"{name}: {_one_line(err)}") from None
        raise
    classifier, feature_dim = _drop_classifier(net, name)
    if in_channels != 3:
        _adapt_first_conv(net, in_channels, keep_weights=load)
    data_config = None
    if published is not None:
        transforms = published.transforms()
        crop, resize = int(transforms.crop_size[0]), int(transforms.resize_size[0])
        data_config = {"mean": _channels(transforms.mean, in_channels), "std": _channels(transforms.std, in_channels),
                       "input_size": crop, "interpolation": transforms.interpolation.value,
                       "crop_pct": crop / resize}
    if weights is not None and initial_weights:
        load_trunk_weights(net, weights, owner=name, ignore=(classifier, *_AUX_ATTRS))
    return net, feature_dim, data_config
