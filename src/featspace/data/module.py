"""In-memory datasets with batched fetching, a reproducible shuffling sampler, and the Lightning DataModule.

A batch is fetched with one ``__getitems__`` call (the batched-fetch protocol of ``torch.utils.data``):
the uint8 images are gathered, augmented and normalized as one tensor, so the data loader costs little
next to the model even on two CPU cores. The loaders are ordinary ``DataLoader``s, so Lightning can swap
in a ``DistributedSampler`` under DDP.

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

from collections.abc import Iterator, Sequence

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, get_worker_info

from featspace.data.datasets import DatasetBundle
from featspace.data.episodic import episodic_loader
from featspace.data.split import stratified_split
from featspace.data.transforms import AUGMENT_POLICIES, augment_batch, augmentation_keys, derive_seed, normalize

__all__ = ["DataModule", "EpochLoader", "EpochShuffleSampler", "InMemoryImages"]


class InMemoryImages(Dataset):
    """Images held as one uint8 tensor; a fetch returns ``(float32 normalized [B, C, H, W], int64 [B])``.

    images: uint8 ``[N, C, H, W]``; labels: int64 ``[N]``; indices: the rows of ``images`` this dataset
    exposes (default all), so the train / validation splits share one tensor without copies. ``mean``
    and ``std`` are per channel on the [0, 1] scale. ``augment`` is one of ``AUGMENT_POLICIES``; its
    randomness is keyed by ``(seed, epoch, row of images)``.
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
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if augment not in AUGMENT_POLICIES:
            raise ValueError(f"unknown augmentation policy {augment!r}; valid: {', '.join(AUGMENT_POLICIES)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.indices = torch.arange(images.shape[0]) if indices is None else indices.to(torch.int64)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        self.seed = int(seed)
        self.pad = int(pad)
        # the epoch lives in shared memory so that worker processes (persistent or not) see updates
        self._shared_epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        #: the sampler whose ``epoch`` this dataset follows; read live in the main process
        self.epoch_source: object | None = None

    def __len__(self) -> int:
        return int(self.indices.numel())

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

    def __getitems__(self, positions: Sequence[int]) -> tuple[Tensor, Tensor]:
        rows = self.indices[torch.as_tensor(positions, dtype=torch.int64)]
        images = self.images[rows]
        if self.augment != "none":
            keys = augmentation_keys(self.seed, self.epoch, rows)
            images = augment_batch(images, keys, self.augment, self.pad)
        return normalize(images, self.mean, self.std), self.labels[rows]

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        images, labels = self.__getitems__([position])
        return images[0], labels[0]

    def __getstate__(self) -> dict:
        # workers get the shared epoch tensor, not a stale copy of the sampler
        state = self.__dict__.copy()
        state["epoch_source"] = None
        return state


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
        if isinstance(dataset, InMemoryImages) and hasattr(self.sampler, "epoch"):
            dataset.epoch_source = self.sampler
            dataset.set_epoch(self.sampler.epoch)
        return super().__iter__()


def _batch_is_ready(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """collate_fn for datasets whose ``__getitems__`` already returns a collated batch."""
    return batch


class DataModule(L.LightningDataModule):
    """Lightning DataModule over a :class:`DatasetBundle`: train / validation / test loaders.

    The validation split is a stratified ``val_fraction`` of the training set fixed by ``seed``
    (10% as the LACE paper, 000 Sec. 4); ``val_fraction=0`` gives an empty validation loader.
    ``augment`` applies the bundle's standard policy to the training split only.
    ``drop_last`` (default: when the training split holds more than one batch) drops the final partial
    training batch, so no step sees a batch of one sample (BatchNorm and batch-statistics heads need two).
    Batches are ``(float32 normalized images [B, C, H, W], int64 labels [B])``.
    """

    def __init__(
        self,
        bundle: DatasetBundle,
        *,
        batch_size: int,
        val_fraction: float = 0.1,
        seed: int = 0,
        augment: bool = True,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        drop_last: bool | None = None,
        pin_memory: bool | None = None,
        episode_ways: int = 0,
        episode_shots: int = 0,
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
        self.bundle = bundle
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.augment = augment
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_idx, self.val_idx = stratified_split(bundle.train_labels, self.val_fraction, self.seed)
        self.drop_last = len(self.train_idx) > batch_size if drop_last is None else drop_last

        common = dict(mean=bundle.mean, std=bundle.std, seed=self.seed)
        policy = bundle.augment if augment else "none"
        self.train_set = InMemoryImages(bundle.train_images, bundle.train_labels, indices=self.train_idx,
                                        augment=policy, **common)
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
        return self.bundle.image_size

    @property
    def class_names(self) -> list[str]:
        return self.bundle.class_names

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle and augmentation of the next training pass (plain loops; Lightning does it)."""
        self.train_sampler.set_epoch(epoch)

    def _loader(self, dataset: InMemoryImages, batch_size: int, **kwargs: object) -> DataLoader:
        return EpochLoader(dataset, batch_size=batch_size, num_workers=self.num_workers, collate_fn=_batch_is_ready,
                           pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0, **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training split; the sampler is seeded by ``(seed, epoch)``. With
        ``episode_ways``/``episode_shots`` set, batches are N-way K-shot episodes instead (built here, where
        the DDP world size is known, so each process gets its part of every episode)."""
        if self.episode_ways:
            return episodic_loader(self.train_set, self.bundle.train_labels[self.train_idx], self.episode_ways,
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
