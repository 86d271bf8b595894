"""In-memory and streaming datasets with batched fetching, a reproducible shuffling sampler, and the Lightning
DataModule.

A batch is fetched with one ``__getitems__`` call (the batched-fetch protocol of ``torch.utils.data``). In memory
(:class:`InMemoryImages`: digits, MNIST, Fashion-MNIST, CIFAR, SVHN, the few-shot splits) the uint8 images are
gathered, augmented and normalized as one tensor, so the data loader costs little next to the model even on two
CPU cores. Streamed (:class:`ImageFileDataset`: the image folders) each image of the batch is decoded, resized and
augmented by torchvision.transforms.v2 in a loader worker (``num_workers``), then the batch is normalized as one
tensor; nothing but the list of paths is kept. The loaders are ordinary ``DataLoader``s, so Lightning can swap in
a ``DistributedSampler`` under DDP.

Reproducibility and resume
--------------------------
Nothing depends on hidden global random state that a checkpoint would not restore:

- the training order is ``randperm(N)`` from a generator seeded by ``(seed, epoch)``
  (:class:`EpochShuffleSampler`); under DDP Lightning replaces it by a ``DistributedSampler``, which is
  seeded by ``(PL_GLOBAL_SEED, epoch)`` in the same way;
- the augmentation of each sample is a hash of ``(seed, epoch, sample index)``
  (``featspace.data.transforms``), independent of batch size, workers and processes.

Lightning calls ``set_epoch`` on the sampler before every training epoch, so a run resumed at epoch
``e`` sees the same batches as an uninterrupted one. In a plain loop, call ``datamodule.set_epoch(e)``
(or ``loader.sampler.set_epoch(e)``) before each epoch; if you never do, the sampler advances its epoch
by itself on every new pass, so epochs still differ. One limit, which Lightning's own samplers share:
with ``num_workers > 0`` the first epoch after a resume has its iterator (and its prefetched batches)
created before Lightning sets the epoch, so exact resume is guaranteed with ``num_workers=0`` (the
default, and the fastest choice for in-memory tensors).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, get_worker_info

from featspace.data.datasets import DatasetBundle
from featspace.data.episodic import episodic_loader
from featspace.data.folders import FolderBundle, ImageFiles
from featspace.data.images import open_image
from featspace.data.split import stratified_split
from featspace.data.transforms import (
    AUGMENT_POLICIES,
    INTERPOLATIONS,
    POLICIES,
    augment_batch,
    augmentation_keys,
    derive_seed,
    eval_transform,
    normalize,
    resolve_policy,
    seeded,
    train_transform,
)

__all__ = ["STATS_SAMPLES", "DataModule", "EpochLoader", "EpochShuffleSampler", "ImageFileDataset", "InMemoryImages",
           "stream_stats"]

log = logging.getLogger(__name__)

#: the training images the normalization statistics of a streamed dataset are computed from (a seeded subset)
STATS_SAMPLES = 2000


class EpochKeyed(Dataset):
    """A dataset whose augmentation is keyed by the epoch of the sampler that feeds it: the epoch lives in shared
    memory so that worker processes (persistent or not) see updates, and the live sampler is read in the main
    process."""

    def _init_epoch(self) -> None:
        self._shared_epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        #: the sampler whose ``epoch`` this dataset follows; read live in the main process
        self.epoch_source: object | None = None

    @property
    def epoch(self) -> int:
        """The epoch that keys the augmentation: the live sampler's in the main process, else the last
        one published to shared memory."""
        source = self.epoch_source
        if source is not None and get_worker_info() is None and hasattr(source, "epoch"):
            return int(source.epoch)
        return int(self._shared_epoch)

    def set_epoch(self, epoch: int) -> None:
        self._shared_epoch.fill_(int(epoch))

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        images, labels = self.__getitems__([position])
        return images[0], labels[0]

    def __getitems__(self, positions: Sequence[int]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        # workers get the shared epoch tensor, not a stale copy of the sampler
        state = self.__dict__.copy()
        state["epoch_source"] = None
        return state


def resize_batch(images: Tensor, size: int, interpolation: str = "bilinear") -> Tensor:
    """uint8 [B, C, H, W] → uint8 [B, C, size, size], antialiased (in-memory datasets fed to a larger model)."""
    if images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode=interpolation, antialias=True,
                            align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _tensor_policy(policy: str, size: int, interpolation: str) -> Callable[[Tensor], Tensor]:
    """``imagenet`` / ``randaugment`` on one uint8 [C, H, W] tensor (in-memory datasets), output size × size."""
    from torchvision.transforms import v2

    mode = v2.InterpolationMode(interpolation)
    steps: list[Any] = [v2.RandomResizedCrop(size, interpolation=mode, antialias=True), v2.RandomHorizontalFlip()]
    if policy == "randaugment":
        steps.append(v2.RandAugment(interpolation=mode))
    return v2.Compose(steps)


class InMemoryImages(EpochKeyed):
    """Images held as one uint8 tensor; a fetch returns ``(float32 normalized [B, C, H, W], int64 [B])``.

    images: uint8 ``[N, C, H, W]``; labels: int64 ``[N]``; indices: the rows of ``images`` this dataset
    exposes (default all), so the train / validation splits share one tensor without copies. ``mean``
    and ``std`` are per channel on the [0, 1] scale. ``augment`` is one of ``POLICIES``
    (``none``/``crop``/``crop_flip`` on the whole batch, ``imagenet``/``randaugment`` image by image); its
    randomness is keyed by ``(seed, epoch, row of images)``. ``size``: the side the batches are resized to
    (``interpolation``, antialiased) when it differs from the stored one; None keeps the stored images.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        indices: Tensor | None = None,
        augment: str = "none",
        seed: int = 0,
        pad: int = 4,
        size: int | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if augment not in POLICIES:
            raise ValueError(f"unknown augmentation policy {augment!r}; valid: {', '.join(POLICIES)}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.indices = torch.arange(images.shape[0]) if indices is None else indices.to(torch.int64)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        self.seed = int(seed)
        self.pad = int(pad)
        self.size = None if size is None or images.shape[-2:] == (size, size) else int(size)
        self.interpolation = interpolation
        self._per_image = (None if augment in AUGMENT_POLICIES else
                           _tensor_policy(augment, self.size or int(images.shape[-1]), interpolation))
        self._init_epoch()

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def side(self) -> tuple[int, int]:
        """(H, W) of the batches this dataset gives."""
        return (self.size, self.size) if self.size else (int(self.images.shape[2]), int(self.images.shape[3]))

    def __getitems__(self, positions: Sequence[int]) -> tuple[Tensor, Tensor]:
        rows = self.indices[torch.as_tensor(positions, dtype=torch.int64)]
        images = self.images[rows]
        if self._per_image is not None:
            keys = augmentation_keys(self.seed, self.epoch, rows)
            images = torch.stack([seeded(key, self._per_image, image) for key, image in zip(keys, images)])
        else:
            if self.augment != "none":
                keys = augmentation_keys(self.seed, self.epoch, rows)
                images = augment_batch(images, keys, self.augment, self.pad)
            if self.size is not None:
                images = resize_batch(images, self.size, self.interpolation)
        return normalize(images, self.mean, self.std), self.labels[rows]


class ImageFileDataset(EpochKeyed):
    """Image files decoded on fetch; a fetch returns ``(float32 normalized [B, 3, S, S], int64 [B])``.

    files: the split's paths and labels; indices: the rows of ``files`` exposed (default all). ``transform``
    maps a PIL image to uint8 [3, S, S] (``featspace.data.transforms.train_transform`` / ``eval_transform``);
    with ``random`` its draws are seeded by ``(seed, epoch, row of files)``, so an image is augmented the same
    whatever the batch, worker or process that reads it. Paths are held as one numpy bytes array, not a list of
    Python strings, so forked workers do not copy them page by page as reference counts change.
    """

    def __init__(self, files: ImageFiles, mean: Sequence[float], std: Sequence[float], *,
                 transform: Callable[[Any], Tensor], indices: Tensor | None = None, random: bool = False,
                 seed: int = 0) -> None:
        self.paths = np.array([os.fsencode(p) for p in files.paths], dtype=np.bytes_)
        self.labels = files.labels.to(torch.int64)
        self.indices = torch.arange(len(files)) if indices is None else indices.to(torch.int64)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.transform = transform
        self.random = bool(random)
        self.seed = int(seed)
        self._init_epoch()

    def __len__(self) -> int:
        return int(self.indices.numel())

    def path(self, row: int) -> str:
        return os.fsdecode(self.paths[row])

    def __getitems__(self, positions: Sequence[int]) -> tuple[Tensor, Tensor]:
        rows = self.indices[torch.as_tensor(positions, dtype=torch.int64)]
        keys = augmentation_keys(self.seed, self.epoch, rows) if self.random else None
        c = len(self.mean)
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], dtype=torch.float32).view(c, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], dtype=torch.float32).view(c, 1, 1)
        batch: Tensor | None = None
        for j, row in enumerate(rows.tolist()):
            image = open_image(self.path(row))
            image = seeded(keys[j], self.transform, image) if keys is not None else self.transform(image)
            if batch is None:
                batch = _batch_tensor((len(rows), *image.shape))
            # normalized image by image into the batch: (pixel / 255 - mean) / std, as featspace.data.normalize
            torch.mul(image, scale, out=batch[j]).add_(shift)
        if batch is None:
            raise ValueError("an empty batch was asked for")
        return batch, self.labels[rows]


def _batch_tensor(shape: tuple[int, ...]) -> Tensor:
    """An uninitialised float32 batch; in a loader worker allocated in shared memory, as torch's ``default_collate``
    does, so it reaches the main process without a copy and no batch-sized block passes through the worker's
    allocator (measured: with a private batch and its normalized copy, a worker's private memory grew from 35 MB to
    over 300 MB in two passes over 600 images at 224 px; written this way it stays at the plain pipeline's)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    numel = 1
    for n in shape:
        numel *= int(n)
    storage = torch.empty(0, dtype=torch.float32)._typed_storage()._new_shared(numel)
    return torch.empty(0, dtype=torch.float32).new(storage).resize_(shape)


def stream_stats(files: ImageFiles, indices: Tensor, transform: Callable[[Any], Tensor], *,
                 samples: int = STATS_SAMPLES, seed: int = 0, batch_size: int = 64,
                 num_workers: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std on the [0, 1] scale of at most ``samples`` images of ``files``
    (a seeded random subset of ``indices``), as ``transform`` presents them (the test view), accumulated as
    running float64 sums over batches from a loader with ``num_workers`` workers: memory is one batch, whatever
    the size of the dataset. The same files, seed and transform give the same numbers."""
    generator = torch.Generator().manual_seed(derive_seed(seed, 0x57A7))
    chosen = indices[torch.randperm(len(indices), generator=generator)[:samples]].sort().values
    dataset = ImageFileDataset(files, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), transform=transform, indices=chosen)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_batch_is_ready)
    total = total_sq = None
    count = 0
    for images, _ in loader:
        block = images.to(torch.float64)
        sums, squares = block.sum(dim=(0, 2, 3)), block.square().sum(dim=(0, 2, 3))
        total = sums if total is None else total + sums
        total_sq = squares if total_sq is None else total_sq + squares
        count += block.shape[0] * block.shape[2] * block.shape[3]
    if total is None or total_sq is None:
        raise ValueError("no training images to compute normalization statistics from")
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))  # a constant channel is centred, not divided
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class EpochShuffleSampler(RandomSampler):
    """A ``RandomSampler`` whose permutation is fixed by ``(seed, epoch)``.

    Subclassing ``RandomSampler`` tells Lightning the loader shuffles, so under DDP it substitutes a
    shuffling ``DistributedSampler``. ``set_epoch`` (called by Lightning before each epoch) chooses the
    permutation; a pass that was not preceded by ``set_epoch`` uses the previous epoch + 1.
    """

    def __init__(self, data_source: Dataset, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0
        self._epoch_was_set = False
        self._passes = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._epoch_was_set = True

    def __iter__(self) -> Iterator[int]:
        if not self._epoch_was_set and self._passes > 0:
            self.epoch += 1
        self._epoch_was_set = False
        self._passes += 1
        if hasattr(self.data_source, "set_epoch"):
            self.data_source.set_epoch(self.epoch)  # publish to workers before any index reaches them
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


class EpochLoader(DataLoader):
    """A ``DataLoader`` that points its dataset at whatever sampler it ends up with (ours, or the
    ``DistributedSampler`` Lightning substitutes under DDP), so augmentation follows that sampler's epoch."""

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        dataset = self.dataset
        if isinstance(dataset, EpochKeyed) and hasattr(self.sampler, "epoch"):
            dataset.epoch_source = self.sampler
            dataset.set_epoch(self.sampler.epoch)
        return super().__iter__()


def _batch_is_ready(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """collate_fn for datasets whose ``__getitems__`` already returns a collated batch."""
    return batch


class DataModule(L.LightningDataModule):
    """Lightning DataModule over a :class:`DatasetBundle` (in memory) or a ``FolderBundle`` (streamed): train /
    validation / test loaders.

    The validation split is the bundle's own (an image folder's ``val/`` beside its ``test/``) or else a
    stratified ``val_fraction`` of the training set fixed by ``seed`` (10% as the LACE paper, 000 Sec. 4);
    ``val_fraction=0`` then gives an empty validation loader.
    ``augment``: ``True`` applies the bundle's standard policy to the training split only, ``False`` none, a name
    that policy (``featspace.data.transforms.POLICIES``).
    ``drop_last`` (default: when the training split holds more than one batch) drops the final partial
    training batch, so no step sees a batch of one sample (BatchNorm and batch-statistics heads need two).
    ``image_size``: the side of the images the model sees (default: the bundle's); in-memory batches of another
    size are resized. ``normalization``: (mean, std) to use instead of the dataset's statistics (a pretrained
    backbone's, or a trained run's); a streamed dataset otherwise computes them with :func:`stream_stats` over
    ``stats_samples`` training images. ``interpolation`` and ``crop_pct`` (default the bundle's) set how
    streamed images are resized (``featspace.data.images``).
    Batches are ``(float32 normalized images [B, C, H, W], int64 labels [B])``.
    """

    def __init__(
        self,
        bundle: DatasetBundle | FolderBundle,
        *,
        batch_size: int,
        val_fraction: float = 0.1,
        seed: int = 0,
        augment: bool | str = True,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        drop_last: bool | None = None,
        pin_memory: bool | None = None,
        episode_ways: int = 0,
        episode_shots: int = 0,
        image_size: int | None = None,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
        interpolation: str = "bilinear",
        crop_pct: float | None = None,
        stats_samples: int = STATS_SAMPLES,
    ) -> None:
        super().__init__()
        if (episode_ways > 0) != (episode_shots > 0):
            raise ValueError(f"episodic batches need both episode_ways and episode_shots, got {episode_ways} "
                             f"and {episode_shots}")
        #: N-way K-shot training batches (the direct-sum paper's n = N·K) instead of shuffled ones; 0 = off
        self.episode_ways, self.episode_shots = int(episode_ways), int(episode_shots)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                       or image_size < 1):
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        self.bundle = bundle
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.augment = augment
        #: the training split's policy (``augment`` resolved against the bundle's standard one)
        self.policy = resolve_policy(augment, bundle.augment)
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.interpolation = interpolation
        #: whether the images are decoded from files by the loaders (image folders) or held in memory
        self.streaming = isinstance(bundle, FolderBundle)
        self.train_labels = bundle.train_labels
        own_val = self.streaming and bundle.val is not None
        if own_val:
            self.train_idx, self.val_idx = torch.arange(len(bundle.train)), torch.arange(len(bundle.val))
        else:
            self.train_idx, self.val_idx = stratified_split(bundle.train_labels, self.val_fraction, self.seed)
        self.drop_last = len(self.train_idx) > batch_size if drop_last is None else drop_last

        if self.streaming:
            self.side = int(image_size or bundle.image_size)
            self.crop_pct = float(crop_pct if crop_pct is not None else bundle.crop_pct)
            view = dict(crop_pct=self.crop_pct, interpolation=interpolation)
            test_view = eval_transform(self.side, **view)
            train_view = train_transform(self.policy, self.side, **view)
            if normalization is None:
                normalization = stream_stats(bundle.train, self.train_idx, test_view, samples=stats_samples,
                                             seed=self.seed, batch_size=min(64, self.eval_batch_size),
                                             num_workers=num_workers)
            self.mean, self.std = (tuple(float(v) for v in x) for x in normalization)
            common = dict(mean=self.mean, std=self.std, seed=self.seed)
            self.train_set: EpochKeyed = ImageFileDataset(bundle.train, indices=self.train_idx, transform=train_view,
                                                          random=self.policy != "none", **common)
            self.train_eval_set: EpochKeyed = ImageFileDataset(bundle.train, indices=self.train_idx,
                                                               transform=test_view, **common)
            if own_val:
                self.val_set: EpochKeyed = ImageFileDataset(bundle.val, transform=test_view, **common)
            else:
                self.val_set = ImageFileDataset(bundle.train, indices=self.val_idx, transform=test_view, **common)
            self.test_set: EpochKeyed = ImageFileDataset(bundle.test, transform=test_view, **common)
        else:
            self.crop_pct = 1.0
            stored = bundle.image_size
            self.side = int(image_size) if image_size is not None else stored[0]
            size = image_size if image_size is not None and (image_size, image_size) != stored else None
            self.mean, self.std = ((tuple(float(v) for v in x) for x in normalization) if normalization is not None
                                   else (bundle.mean, bundle.std))
            common = dict(mean=self.mean, std=self.std, seed=self.seed, size=size, interpolation=interpolation)
            self.train_set = InMemoryImages(bundle.train_images, bundle.train_labels, indices=self.train_idx,
                                            augment=self.policy, **common)
            self.train_eval_set = InMemoryImages(bundle.train_images, bundle.train_labels, indices=self.train_idx,
                                                 **common)
            self.val_set = InMemoryImages(bundle.train_images, bundle.train_labels, indices=self.val_idx, **common)
            self.test_set = InMemoryImages(bundle.test_images, bundle.test_labels, **common)
        #: one sampler for every training loader of this module, so ``set_epoch`` reaches the next pass
        self.train_sampler = EpochShuffleSampler(self.train_set, seed=self.seed)

    # what a model and a head need to know about the data
    @property
    def num_classes(self) -> int:
        return self.bundle.num_classes

    @property
    def in_channels(self) -> int:
        return self.bundle.in_channels

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images the model sees."""
        if self.streaming:
            return self.side, self.side
        return self.train_set.side

    @property
    def class_names(self) -> list[str]:
        return self.bundle.class_names

    @property
    def has_validation(self) -> bool:
        """Whether there is a validation split (the tree's own ``val/``, or a hold-out of ``val_fraction``)."""
        return len(self.val_set) > 0

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of the files an image folder left out with ``skip_corrupt``."""
        return list(getattr(self.bundle, "skipped", []))

    def split_paths(self, split: str) -> list[str] | None:
        """The file of every sample of ``split`` ("train_eval", "val", "test") in loader order, for a streamed
        dataset; None in memory."""
        sets = {"train_eval": self.train_eval_set, "val": self.val_set, "test": self.test_set}
        dataset = sets[split]
        if not isinstance(dataset, ImageFileDataset):
            return None
        return [dataset.path(int(row)) for row in dataset.indices]

    def model_info(self) -> dict[str, Any]:
        """What inference needs to see new images as this module's test images (a run's ``model.json``): class
        names, channels, image size, normalization and how files are resized (``featspace.data.read_image``)."""
        return {"class_names": [str(n) for n in self.class_names], "num_classes": self.num_classes,
                "in_channels": self.in_channels, "image_size": list(self.image_size),
                "mean": list(self.mean), "std": list(self.std),
                "resize": "shorter_side" if self.streaming else "stretch", "crop_pct": self.crop_pct,
                "interpolation": self.interpolation}

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle and augmentation of the next training pass (plain loops; Lightning does it)."""
        self.train_sampler.set_epoch(epoch)

    def _loader(self, dataset: EpochKeyed, batch_size: int, **kwargs: object) -> DataLoader:
        return EpochLoader(dataset, batch_size=batch_size, num_workers=self.num_workers, collate_fn=_batch_is_ready,
                           pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0, **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training split; the sampler is seeded by ``(seed, epoch)``. With
        ``episode_ways``/``episode_shots`` set, batches are N-way K-shot episodes instead (built here, where
        the DDP world size is known, so each process gets its part of every episode)."""
        if self.episode_ways:
            return episodic_loader(self.train_set, self.train_labels[self.train_idx], self.episode_ways,
                                   self.episode_shots, seed=self.seed, loader_class=EpochLoader,
                                   collate_fn=_batch_is_ready, num_workers=self.num_workers,
                                   pin_memory=self.pin_memory)
        return self._loader(self.train_set, self.batch_size, sampler=self.train_sampler, drop_last=self.drop_last)

    def train_eval_dataloader(self) -> DataLoader:
        """The training split in order, without augmentation: for class means and nearest-centroid tests."""
        return self._loader(self.train_eval_set, self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)
