"""Stratified hold-out: a partition, per-class proportions, fixed by the seed."""

from __future__ import annotations

import pytest
import torch

from featspace.data import stratified_split


def labels_with_counts(counts, seed=0):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_partition_and_per_class_proportions(fraction):
    counts = [50, 37, 12, 3, 1, 2, 100]
    labels = labels_with_counts(counts)
    train, val = stratified_split(labels, fraction, seed=3)
    assert train.dtype == val.dtype == torch.int64
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(len(labels)))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)
    assert len(val) == round(fraction * len(labels))
    val_counts = torch.bincount(labels[val], minlength=len(counts))
    train_counts = torch.bincount(labels[train], minlength=len(counts))
    for c, n in enumerate(counts):
        assert abs(val_counts[c].item() - fraction * n) < 1.0 + 1e-9
        assert train_counts[c] >= 1  # no class vanishes from training


def test_fixed_by_the_seed():
    labels = labels_with_counts([30, 30, 30])
    a = stratified_split(labels, 0.1, seed=7)
    b = stratified_split(labels, 0.1, seed=7)
    c = stratified_split(labels, 0.1, seed=8)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])


def test_zero_fraction_and_singletons():
    labels = torch.arange(5)  # every class has one sample: nothing can be held out
    train, val = stratified_split(labels, 0.5, seed=0)
    assert len(val) == 0 and torch.equal(train, torch.arange(5))
    train, val = stratified_split(labels_with_counts([10, 10]), 0.0, seed=0)
    assert len(val) == 0 and len(train) == 20


def test_bad_arguments():
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(torch.arange(4), 1.0)
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(torch.arange(4), -0.1)
    with pytest.raises(ValueError, match="1-D integer"):
        stratified_split(torch.rand(4), 0.1)
