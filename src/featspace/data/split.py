"""Stratified hold-out splits fixed by a seed.

The LACE paper (000_96dfa70546181807.txt, Sec. 4) holds 10% of the training data out for validation;
featspace does the same per class, so the validation split has the training class proportions.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["stratified_split"]


def stratified_split(labels: Tensor, fraction: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split sample indices into (train_idx, val_idx), holding out ``fraction`` of each class.

    labels: int64 ``[N]``. Returns two sorted int64 index tensors that partition ``0 .. N-1``.

    The held-out total is ``round(fraction · N)``; each class gives ``floor(fraction · n_c)`` samples plus
    one more for the classes with the largest remainders (ties broken by the seed), the
    largest-remainder rule, so per-class counts differ from ``fraction · n_c`` by less than one. A class
    is never emptied from the training split: a class with a single sample stays in training. Which
    samples of a class are held out is a seeded permutation, the same on every machine and torch version
    that keeps ``torch.randperm``'s CPU generator.
    """
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ValueError("labels must be a 1-D integer tensor")
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    n = labels.numel()
    labels = labels.cpu()
    generator = torch.Generator().manual_seed(int(seed))
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * float(fraction)
    take = exact.floor().long()
    # classes that may give one more without losing their last training sample
    eligible = take + 1 < counts
    remainder = exact - take.double()
    tie_break = torch.rand(len(classes), generator=generator, dtype=torch.float64) * 1e-9
    order = torch.argsort(torch.where(eligible, remainder + tie_break, torch.full_like(remainder, -1.0)),
                          descending=True)
    extra = max(0, round(float(fraction) * n) - int(take.sum()))
    extra = min(extra, int(eligible.sum()))
    take[order[:extra]] += 1

    val_parts = []
    for cls, k in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(labels == cls).flatten()
        val_parts.append(members[torch.randperm(members.numel(), generator=generator)[:k]])
    val_mask = torch.zeros(n, dtype=torch.bool)
    if val_parts:
        val_mask[torch.cat(val_parts)] = True
    indices = torch.arange(n)
    return indices[~val_mask], indices[val_mask]
