"""Datasets, splits, samplers and batched augmentation (``featspace.data``): every dataset and sampler.

``load(name, data_dir=..., download=...)`` returns a :class:`DatasetBundle` of in-memory uint8 tensors, or for
the image folders a :class:`FolderBundle` of file lists streamed from disk; ``DataModule(bundle, batch_size=...)``
serves either to Lightning (or any loop) as normalized float batches. ``names()`` / ``describe(name)`` list the
datasets: digits (bundled, no download), mnist, fashion_mnist, cifar10, cifar100, cifar100_coarse, svhn (in
memory), imagefolder, tinyimagenet, imagenet (streamed), and ``fewshot_<split>``, the base classes of each few-shot
split (in memory).

- ``datasets``: the dataset registry, ``load`` and the in-memory loaders;
- ``folders``: the streamed image folders (``imagefolder``, ``tinyimagenet``, ``imagenet``);
- ``images``: decoding and resizing one image file, the header check of corrupt files;
- ``fewshot_splits``: class-disjoint few-shot splits, ``load_split(name)`` → :class:`FewShotSplit`
  (mini_imagenet, tiered_imagenet, cub, cifar_fs, and the CPU-sized fashion and digits);
- ``episodic``: N-way K-shot training batches, :class:`EpisodicBatchSampler`, :class:`EpisodicSampler`,
  :func:`episodic_loader` (DDP-aware);
- ``split``: stratified hold-outs; ``transforms``: the augmentation policies and normalization;
- ``module``: the in-memory and streamed datasets, the epoch-seeded sampler and the Lightning ``DataModule``.

The loaders' module (``featspace.data.module``) imports Lightning, which takes seconds; it is imported on
first use of ``DataModule`` and its helpers, so listing or loading datasets stays quick.
"""

from __future__ import annotations

from typing import Any

from featspace.data.datasets import (
    DATASETS,
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
from featspace.data.episodic import EpisodicBatchSampler, EpisodicSampler, episodic_loader
from featspace.data.fewshot_splits import (
    DATASET_PREFIX,
    SPLITS,
    ClassSet,
    FewShotSplit,
    SplitTooLargeError,
    cub_split_of_class,
    load_bundle,
    load_split,
    split_for_dataset,
)
from featspace.data.fewshot_splits import describe as describe_split
from featspace.data.fewshot_splits import names as split_names
from featspace.data.folders import FolderBundle, ImageFiles
from featspace.data.images import (
    IMAGE_SUFFIXES,
    CorruptImageError,
    UnsafeImageError,
    check_image,
    find_images,
    open_image,
    read_image,
)
from featspace.data.split import stratified_split
from featspace.data.transforms import (
    AUGMENT_POLICIES,
    POLICIES,
    augment_batch,
    augmentation_keys,
    derive_seed,
    eval_transform,
    normalize,
    resolve_policy,
    train_transform,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "CorruptImageError",
    "FolderBundle",
    "ImageFiles",
    "ImageFileDataset",
    "POLICIES",
    "STATS_SAMPLES",
    "UnsafeImageError",
    "check_image",
    "eval_transform",
    "find_images",
    "open_image",
    "read_image",
    "resolve_policy",
    "stream_stats",
    "train_transform",
    "AUGMENT_POLICIES",
    "DATASETS",
    "DATASET_PREFIX",
    "DEBIAN_FASHION_MNIST_DIR",
    "SPLITS",
    "ClassSet",
    "DataModule",
    "DatasetBundle",
    "DatasetNotFoundError",
    "EpisodicBatchSampler",
    "EpisodicSampler",
    "EpochLoader",
    "EpochShuffleSampler",
    "FewShotSplit",
    "InMemoryImages",
    "SplitTooLargeError",
    "augment_batch",
    "augmentation_keys",
    "channel_stats",
    "cub_split_of_class",
    "default_data_dir",
    "derive_seed",
    "describe",
    "describe_split",
    "episodic_loader",
    "load",
    "load_bundle",
    "load_split",
    "names",
    "normalize",
    "read_idx",
    "split_for_dataset",
    "split_names",
    "stratified_split",
]

_LAZY = {"DataModule", "EpochLoader", "EpochShuffleSampler", "ImageFileDataset", "InMemoryImages", "STATS_SAMPLES",
         "stream_stats"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from featspace.data import module

        return getattr(module, name)
    raise AttributeError(f"module 'featspace.data' has no attribute {name!r}")
