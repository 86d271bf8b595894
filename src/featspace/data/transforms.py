"""Augmentation policies: batched, counter-based augmentation of uint8 batches, the per-image torchvision
pipelines of the streaming image folders, and normalization.

The standard augmentation the papers use (002_ec5345d43eb6f956.txt, Sec. 4.1: "filled with 4 pixels,
randomly cropped to the original size, and horizontally flipped with a probability of 0.5") is done on a
whole uint8 batch ``[B, C, H, W]`` with one gather, instead of per image through PIL.

Reproducibility: the crop offset and flip of a sample are a hash of ``(seed, epoch, sample index)``
(SplitMix64), not draws from a random generator. They are therefore the same whatever the batch size,
number of data-loader workers, number of DDP processes or order of batches, and a run resumed at epoch
``e`` sees exactly the augmentations an uninterrupted run saw — there is no generator state to save.

Policies (``POLICIES``; ``augment: true`` in a config is the dataset's standard one, ``false`` is ``none``):

- ``none``: nothing; ``crop``: zero-pad 4 and crop back at a random offset; ``crop_flip``: the same plus a
  horizontal flip with probability ½ (002 Sec. 4.1, the CIFAR / Tiny ImageNet standard);
- ``imagenet``: ``RandomResizedCrop`` to the side + flip for training, the test images scaled so that the shorter
  side is ``side / crop_pct`` (256 for 224) and centre-cropped (002 Sec. 4, ImageNet);
- ``randaugment``: ``imagenet``'s crop and flip followed by torchvision's ``RandAugment`` (2 ops, magnitude 9).

In-memory datasets apply ``none``/``crop``/``crop_flip`` to whole batches (``augment_batch``) and the other two
image by image; the streaming image folders run every policy image by image in the loader's workers
(:func:`train_transform`, :func:`eval_transform`, torchvision.transforms.v2). The per-image policies draw from
torch's generator seeded, for each sample, by the same ``(seed, epoch, sample index)`` key (:func:`seeded`), so
they are as reproducible as the batched ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUGMENT_POLICIES", "INTERPOLATIONS", "POLICIES", "augment_batch", "augmentation_keys", "derive_seed",
           "eval_transform", "normalize", "resolve_policy", "seeded", "train_transform"]

#: the resampling filters a pipeline may use (what timm's ``data_config["interpolation"]`` names)
INTERPOLATIONS = ("bilinear", "bicubic")

#: the policies ``augment_batch`` applies to whole uint8 batches: ``none``: identity; ``crop``: zero-pad by
#: ``pad`` and crop back at a random offset; ``crop_flip``: ``crop`` plus a horizontal flip with probability ½.
AUGMENT_POLICIES = ("none", "crop", "crop_flip")

#: every named policy a config's ``augment`` takes (module docstring)
POLICIES = ("none", "crop", "crop_flip", "imagenet", "randaugment")


def resolve_policy(augment: bool | str, standard: str) -> str:
    """The policy a config's ``augment`` names: ``True`` is the dataset's ``standard`` policy, ``False`` is
    ``none``, a string is that policy; an unknown one is a ValueError listing the valid ones."""
    if isinstance(augment, bool):
        return standard if augment else "none"
    if augment not in POLICIES:
        raise ValueError(f"augment must be true, false or one of {', '.join(POLICIES)}, got {augment!r}")
    return str(augment)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer on uint64 arrays (wrapping arithmetic): a bijective, well-mixed hash."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def derive_seed(*parts: int) -> int:
    """A 63-bit seed hashed from integers, e.g. ``derive_seed(seed, epoch)``: distinct parts give
    unrelated seeds (no collisions such as ``seed·K + epoch`` would have)."""
    state = np.array([0], dtype=np.uint64)
    for part in parts:
        state = _splitmix64(state ^ np.uint64(int(part) & 0xFFFFFFFFFFFFFFFF))
    return int(state[0] >> np.uint64(1))


def augmentation_keys(seed: int, epoch: int, indices: Sequence[int] | Tensor) -> np.ndarray:
    """64-bit random keys, one per sample: ``hash(hash(hash(seed) ^ epoch) ^ index)``; uint64 ``[B]``."""
    idx = np.asarray(indices.tolist() if isinstance(indices, Tensor) else indices, dtype=np.int64).astype(np.uint64)
    base = _splitmix64(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    base = _splitmix64(base ^ np.uint64(int(epoch) & 0xFFFFFFFFFFFFFFFF))
    return _splitmix64(base ^ idx)


def augment_batch(images: Tensor, keys: np.ndarray, policy: str, pad: int = 4) -> Tensor:
    """Apply ``policy`` to a uint8 (or float) batch ``[B, C, H, W]`` with per-sample keys from
    :func:`augmentation_keys`; returns a new tensor of the same shape and dtype.

    Crop: the image is zero-padded by ``pad`` on each side (as torchvision's ``RandomCrop(size,
    padding=pad)`` does) and an ``H × W`` window is taken at offset ``(dy, dx) ∈ [0, 2·pad]²``.
    Flip: mirrors the window horizontally when the key's flip bit is set. Bits 0–15 of the key give
    ``dy``, 16–31 ``dx``, bit 32 the flip.
    """
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; valid: {', '.join(AUGMENT_POLICIES)}")
    if images.ndim != 4:
        raise ValueError(f"expected a batch [B, C, H, W], got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if len(keys) != b:
        raise ValueError(f"{len(keys)} keys for a batch of {b} images")
    if policy == "none" or b == 0:
        return images.clone()
    span = 2 * pad + 1
    dy = torch.from_numpy(((keys & np.uint64(0xFFFF)) % np.uint64(span)).astype(np.int64))
    dx = torch.from_numpy((((keys >> np.uint64(16)) & np.uint64(0xFFFF)) % np.uint64(span)).astype(np.int64))
    rows = dy[:, None] + torch.arange(h)  # [B, H] rows of the padded image
    cols = torch.arange(w).expand(b, w)
    if policy == "crop_flip":
        flip = torch.from_numpy(((keys >> np.uint64(32)) & np.uint64(1)).astype(bool))
        cols = torch.where(flip[:, None], cols.flip(-1), cols)
    cols = cols + dx[:, None]
    padded = F.pad(images, (pad, pad, pad, pad)) if pad > 0 else images
    batch_index = torch.arange(b)[:, None, None, None]
    channel_index = torch.arange(c)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 ``[B, C, H, W]`` → float32 ``(pixel / 255 − mean) / std`` per channel (mean/std on [0, 1])."""
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        raise ValueError(f"{len(mean)} means / {len(std)} stds for {images.shape[1]} channels")
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device)
    scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1)
    shift = (-mean_t / std_t).view(1, -1, 1, 1)
    return images.to(torch.float32) * scale + shift


def seeded(key: int, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` with torch's CPU generator seeded by ``key`` (a 64-bit key of
    :func:`augmentation_keys`), the caller's generator state restored afterwards: torchvision's random transforms
    draw from the global generator, and this makes their draws a function of the sample alone."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(key))
        return function(*args)


def _mode(interpolation: str) -> Any:
    from torchvision.transforms import v2

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    return v2.InterpolationMode(interpolation)


def _check_side(size: int, crop_pct: float) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"image_size must be a positive int, got {size!r}")
    if not 0.0 < float(crop_pct) <= 1.0:
        raise ValueError(f"crop_pct must lie in (0, 1], got {crop_pct!r}")


def eval_transform(size: int, *, crop_pct: float = 1.0, interpolation: str = "bilinear") -> Callable[[Any], Tensor]:
    """PIL image → uint8 [C, size, size]: shorter side resized to ``round(size / crop_pct)`` (aspect ratio kept,
    antialiased), then the central ``size × size``. The test transform of every policy, and what
    ``featspace.data.read_image(..., resize="shorter_side")`` does for prediction."""
    from torchvision.transforms import v2

    _check_side(size, crop_pct)
    return v2.Compose([v2.Resize(int(round(size / float(crop_pct))), interpolation=_mode(interpolation),
                                 antialias=True),
                       v2.CenterCrop(size), v2.PILToTensor()])


def train_transform(policy: str, size: int, *, crop_pct: float = 1.0, interpolation: str = "bilinear",
                    pad: int = 4) -> Callable[[Any], Tensor]:
    """PIL image → uint8 [C, size, size] augmented by ``policy`` (module docstring). ``none``, ``crop`` and
    ``crop_flip`` start from the test view (:func:`eval_transform` at ``crop_pct``), so the training images are
    framed as the test images; ``imagenet`` and ``randaugment`` crop a random area of 8–100% of the image at
    aspect ratios 3/4–4/3 (torchvision's defaults) and resize it to ``size``."""
    from torchvision.transforms import v2

    policy = resolve_policy(policy, "none")
    _check_side(size, crop_pct)
    mode = _mode(interpolation)
    if policy in AUGMENT_POLICIES:
        steps: list[Any] = [v2.Resize(int(round(size / float(crop_pct))), interpolation=mode, antialias=True),
                            v2.CenterCrop(size)]
        if policy in ("crop", "crop_flip"):
            steps.append(v2.RandomCrop(size, padding=pad, fill=0))
        if policy == "crop_flip":
            steps.append(v2.RandomHorizontalFlip())
    else:
        steps = [v2.RandomResizedCrop(size, interpolation=mode, antialias=True), v2.RandomHorizontalFlip()]
        if policy == "randaugment":
            steps.append(v2.RandAugment(interpolation=mode))
    return v2.Compose([*steps, v2.PILToTensor()])
