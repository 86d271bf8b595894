"""Datasets, splits and batched augmentation (``featspace.data``).

``load(name, data_dir=..., download=...)`` returns a :class:`DatasetBundle` of in-memory uint8 tensors;
``DataModule(bundle, batch_size=...)`` serves them to Lightning (or any loop) as normalized float batches.
``names()`` / ``describe(name)`` list the datasets: digits (bundled, no download), mnist, fashion_mnist,
cifar10, cifar100, cifar100_coarse, svhn and imagefolder.

The loaders' module (``featspace.data.module``) imports Lightning, which takes seconds; it is imported on
first use of ``DataModule`` and its helpers, so listing or loading datasets stays quick.
"""

from __future__ import annotations

from typing import Any

from featspace.data.datasets import (
    DEBIAN_FASHION_MNIST_DIR,
    DatasetBundle,
    DatasetNotFoundError,
    channel_stats,
    default_data_dir,
    describe,
    load,
    names,
    read_idx,
)
from featspace.data.split import stratified_split
from featspace.data.transforms import AUGMENT_POLICIES, augment_batch, augmentation_keys, derive_seed, normalize

__all__ = [
    "AUGMENT_POLICIES",
    "DEBIAN_FASHION_MNIST_DIR",
    "DataModule",
    "DatasetBundle",
    "DatasetNotFoundError",
    "EpochLoader",
    "EpochShuffleSampler",
    "InMemoryImages",
    "augment_batch",
    "augmentation_keys",
    "channel_stats",
    "default_data_dir",
    "derive_seed",
    "describe",
    "load",
    "names",
    "normalize",
    "read_idx",
    "stratified_split",
]

_LAZY = {"DataModule", "EpochLoader", "EpochShuffleSampler", "InMemoryImages"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from featspace.data import module

        return getattr(module, name)
    raise AttributeError(f"module 'featspace.data' has no attribute {name!r}")
