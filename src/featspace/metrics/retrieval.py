"""Retrieval metrics: how well an embedding's nearest neighbours share its class.

Each test embedding is a query and the rest of the test set its gallery (the "same source" protocol of
Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020, as pytorch-metric-learning's
``AccuracyCalculator`` computes it, with the same names):

- ``precision_at_1``: the fraction of queries whose nearest neighbour has their class;
- ``r_precision``: for a query with R other samples of its class, the fraction of its R nearest neighbours that
  have its class, averaged over queries;
- ``mean_average_precision_at_r`` (MAP@R): (1/R)·Σ_{i ≤ R} P(i)·rel(i), P(i) the precision among the i nearest
  and rel(i) = 1 when the i-th nearest has the query's class, averaged over queries;
- ``recall_at_k`` for k ∈ {1, 2, 4, 8}: the fraction of queries with at least one neighbour of their class among
  the k nearest (the Recall@K of the metric-learning literature).

A query whose class has no other sample (R = 0) has no answer and is left out of every average, as the
``AccuracyCalculator`` leaves out "lone" queries. Neighbours are ranked by Euclidean distance (the keys above)
and by cosine similarity (the same keys with ``_cosine``). The similarities are computed in row blocks of at most
``max_block_entries`` entries and only the top max(R, 8) of each row are kept, so memory stays bounded: never an
N×N matrix. float64 throughout.
"""

from __future__ import annotations

import numpy as np
import torch

from featspace.functional import normalize_rows, squared_distances
from featspace.metrics._inputs import ArrayLike, as_tensor, embeddings_array, labels_array

__all__ = ["RECALL_KS", "retrieval_metrics"]

#: the k of recall_at_k
RECALL_KS = (1, 2, 4, 8)


def retrieval_metrics(embeddings: ArrayLike, labels: ArrayLike, *, metric: str = "euclidean",
                      max_block_entries: int = 4_000_000) -> dict[str, float]:
    """``precision_at_1``, ``r_precision``, ``mean_average_precision_at_r`` and ``recall_at_{1,2,4,8}`` of
    ``embeddings`` [N, d] with ``labels`` [N] (module docstring), neighbours ranked by ``metric``
    ("euclidean" or "cosine"). NaN when no query has another sample of its class."""
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    x = embeddings_array(embeddings, "embeddings", min_rows=2)
    y = labels_array(labels, x.shape[0])
    n = x.shape[0]
    points = as_tensor(x)
    classes = as_tensor(y)
    if metric == "cosine":
        points = normalize_rows(points)
    relevant = torch.bincount(classes)[classes] - 1  # R of each query: the other samples of its class
    keep = int(min(n - 1, max(int(relevant.max()), max(RECALL_KS))))
    squared_norms = (points * points).sum(1)
    rows = max(1, max_block_entries // n)
    sums = {"precision_at_1": 0.0, "r_precision": 0.0, "mean_average_precision_at_r": 0.0,
            **{f"recall_at_{k}": 0.0 for k in RECALL_KS}}
    queries = 0
    ranks = torch.arange(1, keep + 1, dtype=torch.float64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = points[start:stop]
        if metric == "cosine":
            similarity = block @ points.T
        else:
            similarity = -squared_distances(block, points, a_squared_norms=squared_norms[start:stop],
                                            b_squared_norms=squared_norms)
        similarity[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf  # a query is not its own
        nearest = similarity.topk(keep, dim=1).indices
        hits = (classes[nearest] == classes[start:stop, None]).double()           # rel(i), [b, keep]
        r = relevant[start:stop]
        answered = r > 0
        if not bool(answered.any()):
            continue
        hits, r = hits[answered], r[answered].double()
        within_r = (ranks[None, :] <= r[:, None]).double()
        precision_at_i = hits.cumsum(1) / ranks[None, :]
        sums["precision_at_1"] += float(hits[:, 0].sum())
        sums["r_precision"] += float(((hits * within_r).sum(1) / r).sum())
        sums["mean_average_precision_at_r"] += float(((precision_at_i * hits * within_r).sum(1) / r).sum())
        for k in RECALL_KS:
            sums[f"recall_at_{k}"] += float(hits[:, :k].amax(1).sum())
        queries += int(answered.sum())
    suffix = "_cosine" if metric == "cosine" else ""
    return {f"{key}{suffix}": (value / queries if queries else float(np.nan)) for key, value in sums.items()}
