"""N-way K-shot training batches: composition, class and sample statistics, determinism, resume, DDP shards."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from featspace.data.episodic import EpisodicBatchSampler, EpisodicSampler, episodic_loader


def _labels(counts, seed=0):
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))]


def test_every_batch_holds_n_classes_times_k_samples():
    labels = _labels([13, 20, 9, 30, 17, 25])
    sampler = EpisodicBatchSampler(labels, ways=4, shots=3, episodes_per_epoch=60, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 60
    for batch in batches:
        assert len(batch) == 12 and len(set(batch)) == 12
        classes = labels[torch.tensor(batch)].view(4, 3)  # class-major
        assert (classes == classes[:, :1]).all()
        assert len(set(classes[:, 0].tolist())) == 4


def test_class_frequencies_are_uniform_and_samples_cycle_before_repeating():
    counts = [12, 30, 18, 25, 40, 22, 15, 33]
    labels = _labels(counts)
    sampler = EpisodicBatchSampler(labels, ways=3, shots=4, episodes_per_epoch=3000, seed=0)
    drawn = torch.tensor(sampler.episodes(0)).view(3000, 3, 4)
    class_freq = torch.bincount(labels[drawn[:, :, 0]].flatten(), minlength=len(counts)).double()
    expected = 3000 * 3 / len(counts)
    assert float(((class_freq - expected) ** 2 / expected).sum()) < 24.3  # χ², 7 d.o.f., p ≈ 0.001
    for c, n in enumerate(counts):
        sequence = drawn[labels[drawn[:, :, 0]] == c].flatten().tolist()  # class c's samples in drawing order
        assert len(sequence) >= 2 * n
        assert len(set(sequence[:n])) == n  # the whole class is visited before any sample repeats
        assert sorted(sequence[:n]) == sorted(torch.nonzero(labels == c).flatten().tolist())


def test_epochs_are_seeded_and_resume_reproduces_them():
    labels = _labels([20] * 6)
    a = EpisodicBatchSampler(labels, ways=3, shots=2, seed=5)
    b = EpisodicBatchSampler(labels, ways=3, shots=2, seed=5)
    a.set_epoch(0)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert first != second
    b.set_epoch(1)  # a resumed run sets the epoch it restarts from
    assert list(b) == second
    assert list(EpisodicBatchSampler(labels, ways=3, shots=2, seed=6)) != first
    # a loop that never calls set_epoch still gets a new epoch on every pass
    c = EpisodicBatchSampler(labels, ways=3, shots=2, seed=5)
    assert list(c) == first and list(c) == second


@pytest.mark.parametrize("replicas", [2, 3, 6])
def test_ddp_shards_are_disjoint_and_together_form_the_global_episode(replicas):
    labels = _labels([15, 22, 18, 30, 12, 26, 19])
    single = list(EpisodicBatchSampler(labels, ways=6, shots=2, episodes_per_epoch=25, seed=3))
    shards = [list(EpisodicBatchSampler(labels, ways=6, shots=2, episodes_per_epoch=25, seed=3,
                                        num_replicas=replicas, rank=r)) for r in range(replicas)]
    assert all(len(s) == 25 for s in shards)
    for step in range(25):
        parts = [shards[r][step] for r in range(replicas)]
        assert all(len(p) == 12 // replicas for p in parts)
        assert sum(parts, []) == single[step]
        assert len(set(sum(parts, []))) == 12


def test_lightning_friendly_sampler_yields_the_same_batches():
    labels = _labels([10, 14, 9, 11, 16])
    dataset = TensorDataset(torch.arange(labels.numel()), labels)
    loader = episodic_loader(dataset, labels, ways=3, shots=2, seed=2, num_replicas=2, rank=1)
    sampler = loader.sampler
    assert isinstance(sampler, EpisodicSampler) and isinstance(sampler, DistributedSampler)
    assert loader.batch_size == 3 and len(loader) == len(sampler.batches)
    reference = EpisodicBatchSampler(labels, ways=3, shots=2, seed=2, num_replicas=2, rank=1)
    sampler.set_epoch(4)
    reference.set_epoch(4)
    batches = [positions.tolist() for positions, _ in loader]
    assert batches == list(reference)
    # Lightning reaches set_epoch through loader.sampler
    from lightning.fabric.utilities.data import _set_sampler_epoch

    _set_sampler_epoch(loader, 7)
    assert sampler.epoch == 7
    reference.set_epoch(7)
    assert [p.tolist() for p, _ in loader] == list(reference)
    # also usable as a plain batch sampler
    plain = DataLoader(dataset, batch_sampler=EpisodicBatchSampler(labels, ways=3, shots=2, seed=2))
    assert all(len(x) == 6 for x, _ in plain)


def test_bad_arguments_are_rejected():
    labels = _labels([5, 5, 2])
    with pytest.raises(ValueError, match="at least 4 classes"):
        EpisodicBatchSampler(labels, ways=4, shots=1)
    with pytest.raises(ValueError, match="need 3 samples"):
        EpisodicBatchSampler(labels, ways=2, shots=3)
    with pytest.raises(ValueError, match="divisible"):
        EpisodicBatchSampler(labels, ways=3, shots=1, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="rank"):
        EpisodicBatchSampler(labels, ways=2, shots=1, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="samples but"):
        EpisodicSampler(TensorDataset(torch.zeros(3)), labels, ways=2, shots=1)
