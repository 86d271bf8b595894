"""N-way K-shot training batches (003_3b01b74d9ee629e7.txt, Sec. 3.1, "Training"): each mini-batch of the paper's
n = N·K samples holds N classes drawn at random with K samples each, so that metric losses (NCA, Proto) see a
controlled class distribution under the same batch budget.

Two forms of the same sampling:

- :class:`EpisodicBatchSampler` yields one list of dataset positions per batch — for a plain loop, as
  ``DataLoader(dataset, batch_sampler=...)``;
- :class:`EpisodicSampler` yields the same positions one by one, for ``DataLoader(dataset, sampler=...,
  batch_size=sampler.batch_size, drop_last=True)``. It subclasses ``DistributedSampler``, so Lightning neither
  wraps nor replaces it under DDP (it would fail to inject its own sampler into a custom batch sampler), and
  Lightning's per-epoch ``set_epoch`` call reaches it (Lightning calls ``set_epoch`` on ``loader.sampler``,
  not on a batch sampler). :func:`episodic_loader` builds that loader.

Randomness: each epoch's episodes come from a generator seeded by ``(seed, epoch)``; ``set_epoch(epoch)``
(Lightning calls it before every training epoch, 0-based) chooses them, so a run resumed at epoch e draws the
batches an uninterrupted run drew. Within an epoch every class keeps a shuffled queue of its samples, so a
class's samples are all visited before any repeats; the N classes of a batch are a uniformly random N-subset.

DDP: every process computes the same global episodes and keeps its own contiguous slice of each, i.e. each
episode of N·K samples is split across the R processes (N·K must be divisible by R; with N divisible by R each
process holds whole classes, N/R of them with all K shots). The global batch is then the paper's N·K, which is
what the heads that gather batch statistics across processes (NCA, Proto, ...) need; whole episodes per rank
would instead give R independent N-way episodes and an R·N·K global batch. Processes never share a sample
within a step, and the number of steps per epoch is the same on every process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from featspace.data.transforms import derive_seed

__all__ = ["EpisodicBatchSampler", "EpisodicSampler", "episodic_loader"]


def _resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    initialized = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if not isinstance(num_replicas, int) or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive int, got {num_replicas!r}")
    if not isinstance(rank, int) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must lie in 0..{num_replicas - 1}, got {rank!r}")
    return num_replicas, rank


def _epoch_seed(seed: int, epoch: int) -> int:
    return derive_seed(0x5EED_E915, seed, epoch)


class EpisodicBatchSampler(Sampler[list[int]]):
    """Batches of ``ways`` classes × ``shots`` samples from ``labels`` [M] (positions 0..M−1 of a dataset).

    episodes_per_epoch: batches per epoch (default M // (ways·shots): an epoch then draws about as many samples
        as the dataset holds). num_replicas / rank: the DDP world (default: from ``torch.distributed`` when it
        is initialized, else 1 / 0); each process yields ``ways·shots / num_replicas`` positions per batch (see
        the module docstring). seed: with the epoch, fixes the episodes.
    Every class must hold at least ``shots`` samples; the batch is class-major (the K samples of the first
    class, then the second, ...).
    """

    def __init__(self, labels: Sequence[int] | Tensor, ways: int, shots: int, *, episodes_per_epoch: int | None = None,
                 num_replicas: int | None = None, rank: int | None = None, seed: int = 0) -> None:
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        for name, value in (("ways", ways), ("shots", shots)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        if classes.numel() < ways:
            raise ValueError(f"{ways}-way batches need at least {ways} classes; the labels hold {classes.numel()}")
        short = classes[counts < shots]
        if short.numel():
            raise ValueError(f"{shots}-shot batches need {shots} samples per class; class(es) "
                             f"{short.tolist()[:10]} have fewer (smallest: {int(counts.min())})")
        self.num_replicas, self.rank = _resolve_replicas(num_replicas, rank)
        if (ways * shots) % self.num_replicas:
            raise ValueError(f"an episode of {ways}×{shots} = {ways * shots} samples cannot be split evenly across "
                             f"{self.num_replicas} processes; choose N·K divisible by the number of processes")
        if episodes_per_epoch is None:
            episodes_per_epoch = max(1, labels.numel() // (ways * shots))
        if not isinstance(episodes_per_epoch, int) or episodes_per_epoch < 1:
            raise ValueError(f"episodes_per_epoch must be a positive int, got {episodes_per_epoch!r}")
        self.ways, self.shots = ways, shots
        self.episodes_per_epoch = episodes_per_epoch
        self.seed = int(seed)
        self.classes = classes
        order = torch.argsort(inverse, stable=True)
        self._members = [part.tolist() for part in torch.split(order, counts.tolist())]
        self.epoch = 0
        self._epoch_was_set = False
        self._passes = 0

    @property
    def batch_size(self) -> int:
        """Positions per batch on this process: ways·shots / num_replicas."""
        return self.ways * self.shots // self.num_replicas

    drop_last = True  # every batch is full; for tools that look for the attribute

    def __len__(self) -> int:
        return self.episodes_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the episodes of the next pass (0-based epoch; Lightning calls this before each epoch)."""
        self.epoch = int(epoch)
        self._epoch_was_set = True

    def episodes(self, epoch: int) -> list[list[int]]:
        """All processes' episodes of ``epoch``: ``episodes_per_epoch`` lists of ways·shots positions."""
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        queues: list[list[int]] = [[] for _ in self._members]
        out = []
        for _ in range(self.episodes_per_epoch):
            chosen = torch.randperm(len(self._members), generator=generator)[: self.ways].tolist()
            episode: list[int] = []
            for c in chosen:
                queue = queues[c]
                if len(queue) < self.shots:
                    # the rest of this pass over the class, then a fresh permutation without those samples
                    members = self._members[c]
                    fresh = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
                    leftover = set(queue)
                    queue.extend(x for x in fresh if x not in leftover)
                episode.extend(queue[: self.shots])
                del queue[: self.shots]
            out.append(episode)
        return out

    def _next_epoch(self) -> int:
        # a pass not preceded by set_epoch moves on by itself, so a plain loop that never calls it still varies
        if not self._epoch_was_set and self._passes > 0:
            self.epoch += 1
        self._epoch_was_set = False
        self._passes += 1
        return self.epoch

    def __iter__(self) -> Iterator[list[int]]:
        # not a generator: the epoch advances when the pass starts, not at its first batch
        return self.batches_of(self._next_epoch())

    def batches_of(self, epoch: int) -> Iterator[list[int]]:
        """This process's share of each episode of ``epoch``."""
        start, stop = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        return iter([episode[start:stop] for episode in self.episodes(epoch)])


class EpisodicSampler(DistributedSampler):
    """The positions of :class:`EpisodicBatchSampler`'s batches one after another, for
    ``DataLoader(dataset, sampler=s, batch_size=s.batch_size, drop_last=True)`` (see :func:`episodic_loader`).

    Arguments as :class:`EpisodicBatchSampler`; ``dataset`` only gives its length, which must equal the number
    of labels. A ``DistributedSampler`` only by type: Lightning then leaves it in place under DDP, and calls
    its ``set_epoch``; the sharding across processes is the batch sampler's.
    """

    def __init__(self, dataset: Dataset, labels: Sequence[int] | Tensor, ways: int, shots: int, *,
                 episodes_per_epoch: int | None = None, num_replicas: int | None = None, rank: int | None = None,
                 seed: int = 0) -> None:
        self.batches = EpisodicBatchSampler(labels, ways, shots, episodes_per_epoch=episodes_per_epoch,
                                            num_replicas=num_replicas, rank=rank, seed=seed)
        num_labels = torch.as_tensor(labels).numel()
        if len(dataset) != num_labels:
            raise ValueError(f"the dataset holds {len(dataset)} samples but {num_labels} labels were given")
        super().__init__(dataset, num_replicas=self.batches.num_replicas, rank=self.batches.rank, shuffle=False,
                         seed=seed, drop_last=True)
        self.num_samples = len(self.batches) * self.batches.batch_size
        self.total_size = self.num_samples * self.batches.num_replicas

    @property
    def batch_size(self) -> int:
        return self.batches.batch_size

    @property
    def epoch(self) -> int:  # type: ignore[override]
        return self.batches.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        # DistributedSampler.__init__ assigns self.epoch = 0
        if hasattr(self, "batches"):
            self.batches.epoch = int(value)

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        epoch = self.batches._next_epoch()
        if hasattr(self.dataset, "set_epoch"):
            # featspace.data's in-memory datasets key their augmentation by the epoch; publish it before any
            # index reaches a worker process
            self.dataset.set_epoch(epoch)
        return iter([position for batch in self.batches.batches_of(epoch) for position in batch])


def episodic_loader(dataset: Dataset, labels: Sequence[int] | Tensor, ways: int, shots: int, *,
                    episodes_per_epoch: int | None = None, num_replicas: int | None = None, rank: int | None = None,
                    seed: int = 0, loader_class: type[DataLoader] = DataLoader, **loader_kwargs: Any) -> DataLoader:
    """A training loader of N-way K-shot batches over ``dataset`` (``labels`` [len(dataset)] its labels), built as
    ``loader_class(dataset, sampler=EpisodicSampler(...), batch_size=ways·shots / num_replicas, drop_last=True)``
    so that it works unchanged under Lightning with or without DDP. Create it inside the ``train_dataloader``
    hook under DDP, where ``torch.distributed`` gives the world size and rank. ``loader_kwargs`` go to the
    loader (``num_workers``, ``collate_fn``, ...)."""
    sampler = EpisodicSampler(dataset, labels, ways, shots, episodes_per_epoch=episodes_per_epoch,
                              num_replicas=num_replicas, rank=rank, seed=seed)
    return loader_class(dataset, sampler=sampler, batch_size=sampler.batch_size, drop_last=True, **loader_kwargs)
