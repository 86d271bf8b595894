"""Metric-learning losses on a batch: NCA (003 eq. 4) and prototypical (003 eq. 3), both leave-one-out.

Both losses of the direct-sum paper (003_3b01b74d9ee629e7.txt, Sec. 2.2) compare every sample of a batch
with the others by squared Euclidean distance, without a classifier. They need no scale or temperature
(the paper uses none). Samples that have no other sample of their own class in the batch have no
leave-one-out positive: their term is undefined in the text, and featspace leaves them out of the mean
over samples. A batch where no sample has a positive (all labels distinct, a batch of one) gives 0,
still connected to ``x`` so that ``backward`` runs and yields zero gradients — never NaN.

The functions work in the dtype they are given; callers running under autocast should pass float32 or
wider and switch autocast off around them (the heads in ``featspace.heads.directsum`` do), because the
Gram matrix behind the distances loses most of its digits in bfloat16.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featspace.functional.capture import capturing_graph
from featspace.functional.rows import class_sums, squared_distances

__all__ = ["nca_loss", "proto_loss"]


def _check_batch(x: Tensor, y: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must have shape [n, d], got {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape [{x.shape[0]}] to match x, got {tuple(y.shape)}")


def _mean_over_valid(per_sample: Tensor, valid: Tensor) -> Tensor:
    # Masked mean without a host sync: with no valid sample this is 0 / 1 = 0, still part of the graph.
    per_sample = torch.where(valid, per_sample, torch.zeros_like(per_sample))
    return per_sample.sum() / valid.sum().clamp_min(1).to(per_sample.dtype)


def nca_loss(x: Tensor, y: Tensor) -> Tensor:
    """Neighbourhood component analysis loss, leave-one-out (003 eq. 4).

        ℓ = −E_i log( Σ_{j≠i, y_j=y_i} exp(−‖x_i − x_j‖²) / Σ_{j≠i} exp(−‖x_i − x_j‖²) )

    computed with log-sum-exp. x: [n, d] embeddings, y: [n] integer labels (any values). Returns a scalar.
    E_i runs over the samples that have at least one other sample of their class; see the module docstring.
    """
    _check_batch(x, y)
    n = x.shape[0]
    neg_dist = -squared_distances(x, x)
    not_self = ~torch.eye(n, dtype=torch.bool, device=x.device)
    positive = (y[:, None] == y[None, :]) & not_self
    valid = positive.any(1)
    # Rows without a positive are replaced by zeros before log-sum-exp: an all −inf row would give a NaN
    # gradient even though the row is dropped from the mean afterwards.
    keep_row = valid[:, None]
    zeros = torch.zeros_like(neg_dist)
    log_numerator = torch.where(keep_row, neg_dist.masked_fill(~positive, float("-inf")), zeros).logsumexp(1)
    log_denominator = torch.where(keep_row, neg_dist.masked_fill(~not_self, float("-inf")), zeros).logsumexp(1)
    return _mean_over_valid(log_denominator - log_numerator, valid)


def proto_loss(x: Tensor, y: Tensor, num_classes: int | None = None) -> Tensor:
    """Prototypical loss with leave-one-out prototypes (003 eq. 3).

        ℓ = −E_i log( exp(−‖x_i − μ_{y_i, i}‖²) / Σ_c exp(−‖x_i − μ_{c, i}‖²) ),   μ_{c, i} = mean_{j≠i, y_j=c} x_j

    For c ≠ y_i the prototype is the plain class mean; for c = y_i it leaves x_i out. The sum over c runs
    over the classes present in the batch (a class with no sample has no prototype).

    x: [n, d], y: [n] integer labels. Returns a scalar; E_i as in the module docstring.
    ``num_classes``: labels lie in [0, num_classes). On an accelerator this avoids a host-device sync
    (prototypes are kept for all C classes, absent ones masked out); on the CPU, or with ``None`` (any
    label values), the labels are compacted to the classes present (``torch.unique``), so the cost is
    O(n·K·d) with K ≤ n the number of classes in the batch, not O(n·C·d).
    """
    _check_batch(x, y)
    # the compaction's shape depends on the label values: inside a graph capture keep all C prototypes
    if num_classes is None or (x.device.type == "cpu" and not capturing_graph()):
        _, y = torch.unique(y, return_inverse=True)
        num_classes = int(y.max()) + 1 if y.numel() else 1
    return _proto_loss_over_classes(x, y, num_classes)


def _proto_loss_over_classes(x: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """proto_loss with prototypes for every label in [0, num_classes), absent ones masked; no host sync."""
    sums, counts = class_sums(x, y, num_classes)  # [K, d], [K]; the sums also give the leave-one-out means
    means = sums / counts.clamp_min(1.0)[:, None]
    own_count = counts[y]  # [n]
    valid = own_count >= 2
    leave_one_out_mean = (sums[y] - x) / (own_count - 1.0).clamp_min(1.0)[:, None]
    own_dist = (x - leave_one_out_mean).pow(2).sum(1)
    neg_dist = (-squared_distances(x, means)).scatter(1, y[:, None], -own_dist[:, None])
    neg_dist = neg_dist.masked_fill((counts == 0)[None, :], float("-inf"))
    neg_dist = torch.where(valid[:, None], neg_dist, torch.zeros_like(neg_dist))
    return _mean_over_valid(neg_dist.logsumexp(1) + own_dist, valid)
