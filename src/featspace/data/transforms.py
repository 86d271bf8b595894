"""Batched, counter-based augmentation and normalization of uint8 image batches.

The standard augmentation the papers use (002_ec5345d43eb6f956.txt, Sec. 4.1: "filled with 4 pixels,
randomly cropped to the original size, and horizontally flipped with a probability of 0.5") is done on a
whole uint8 batch ``[B, C, H, W]`` with one gather, instead of per image through PIL.

Reproducibility: the crop offset and flip of a sample are a hash of ``(seed, epoch, sample index)``
(SplitMix64), not draws from a random generator. They are therefore the same whatever the batch size,
number of data-loader workers, number of DDP processes or order of batches, and a run resumed at epoch
``e`` sees exactly the augmentations an uninterrupted run saw — there is no generator state to save.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUGMENT_POLICIES", "augment_batch", "augmentation_keys", "derive_seed", "normalize"]

#: ``none``: identity; ``crop``: zero-pad by ``pad`` and crop back at a random offset;
#: ``crop_flip``: ``crop`` plus a horizontal flip with probability ½.
AUGMENT_POLICIES = ("none", "crop", "crop_flip")

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
