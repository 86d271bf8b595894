"""Local weight files for a backbone's trunk (``backbone_params.weights: PATH``), read as data only.

A weights file is a state dict saved with ``torch.save`` (``.pth``, ``.pt``, ``.bin``, ``.ckpt``; read with
``torch.load(weights_only=True)``, so it can hold tensors and plain containers but never code) or with
safetensors (``.safetensors``). Accepted layouts:

- a bare state dict ``{"layer1.0.conv1.weight": Tensor, ...}``, as ``model.state_dict()`` gives it;
- the same under ``"state_dict"`` or ``"model"`` (training scripts' checkpoints, Lightning's included);
- keys prefixed ``module.`` (a model saved from inside DistributedDataParallel);
- a featspace checkpoint (``RUN/checkpoints/last.ckpt``): its ``backbone.trunk.*`` entries.

The keys must be the trunk's own (``backbone.trunk.state_dict()``); the file's classifier, which featspace
removed from timm and torchvision models, is left out (``ignore``). A first convolution saved for 3-channel
images is adapted to the data's channels as timm adapts its pretrained weights (``timm.models.adapt_input_conv``:
summed over RGB for grayscale). Anything else that does not fit — a missing or extra key, a shape — is a
one-line ``ValueError`` naming the keys.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TORCH_SUFFIXES", "load_trunk_weights", "read_state_dict"]

#: suffixes read with ``torch.load(weights_only=True)``; ``.safetensors`` is read with safetensors
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
#: the prefix of a featspace checkpoint's trunk entries
_FEATSPACE_TRUNK = "backbone.trunk."
#: keys listed in an error before "(+N more)"
_SHOWN = 6


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def read_state_dict(path: str | Path, *, what: str = "backbone_params.weights") -> dict[str, Tensor]:
    """The state dict in a ``.pth``/``.pt``/``.bin``/``.ckpt`` or ``.safetensors`` file (module docstring), on
    the CPU; ``what`` names the setting in errors."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise ValueError(f"{what} must be the path of a .pth or .safetensors file, got {path!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"{what}: no file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            loaded: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{what}: {path} is not a readable safetensors file ({' '.join(str(err).split())[:160]})"
                             ) from None
    elif suffix in TORCH_SUFFIXES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            if "Unsupported global" not in str(err):  # not a pickle at all: random bytes, another format
                raise ValueError(f"{what}: {path} is not a readable torch file (UnpicklingError)") from None
            raise ValueError(f"{what}: {path} is not a weights file: it holds something other than tensors and "
                             "plain data (code, or objects of other classes), so it was not loaded") from None
        except Exception as err:  # truncated, random bytes, another format
            raise ValueError(f"{what}: {path} is not a readable torch file ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:160]})") from None
    else:
        raise ValueError(f"{what}: {path} must end in .safetensors or one of {', '.join(TORCH_SUFFIXES)}")
    return _unwrap(loaded, path, what)


def _unwrap(loaded: Any, path: Path, what: str) -> dict[str, Tensor]:
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not loaded:
        raise ValueError(f"{what}: {path} holds no state dict (a mapping of names to tensors, bare or under "
                         "'state_dict' or 'model')")
    state = {str(k): v for k, v in loaded.items()}
    if any(k.startswith(_FEATSPACE_TRUNK) for k in state):  # a featspace checkpoint: its trunk alone
        state = {k[len(_FEATSPACE_TRUNK):]: v for k, v in state.items() if k.startswith(_FEATSPACE_TRUNK)}
    elif all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    bad = sorted(k for k, v in state.items() if not isinstance(v, Tensor))
    if bad:
        raise ValueError(f"{what}: {path} is not a state dict: {_listed(bad)} not tensors")
    return state


def _first_conv(trunk: nn.Module) -> str | None:
    """The state-dict key of the first convolution's weight (the one that sees the images)."""
    for name, module in trunk.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight" if name else "weight"
    return None


def load_trunk_weights(trunk: nn.Module, path: str | Path, *, owner: str, ignore: Iterable[str] = ()) -> None:
    """Load the weights file ``path`` into ``trunk`` (module docstring); ``owner`` (the backbone's name) is named
    in errors; keys under an ``ignore`` prefix (the removed classifier) are left out when the trunk lacks them."""
    what = "backbone_params.weights"
    state = read_state_dict(path, what=what)
    own = trunk.state_dict()
    prefixes = tuple(f"{p}." for p in ignore if p)
    state = {k: v for k, v in state.items() if k in own or not k.startswith(prefixes)}
    first = _first_conv(trunk)
    if first is not None and first in state and first in own:
        saved, wanted = state[first], own[first]
        if saved.ndim == 4 and saved.shape[1] == 3 and saved.shape != wanted.shape \
                and saved.shape[0] == wanted.shape[0] and saved.shape[2:] == wanted.shape[2:]:
            from timm.models import adapt_input_conv

            state[first] = adapt_input_conv(wanted.shape[1], saved).to(saved.dtype)
    # BatchNorm's num_batches_tracked is absent from older torchvision files and unused with momentum set
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in state
                    if k in own and state[k].shape != own[k].shape)
    problems = [f"{label} {_listed(keys)}" for label, keys in (("missing keys", missing), ("unexpected keys",
                unexpected), ("shape mismatch (file vs model)", shapes)) if keys]
    if problems:
        raise ValueError(f"{what}: {Path(path)} does not fit {owner}'s trunk: {'; '.join(problems)} (the file must "
                         "hold this architecture's state dict, bare or under 'state_dict'/'model')")
    trunk.load_state_dict(state, strict=False)
