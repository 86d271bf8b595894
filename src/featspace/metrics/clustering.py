"""Cluster validity of embeddings grouped by their labels (LACE, 000_96dfa70546181807.txt, Table 2, Sec. 4.2).

LACE reports, on the test features of its trained networks, three scores of the partition of the
features into their true classes — Silhouette (Rousseeuw), Davies–Bouldin and Calinski–Harabasz — and
the homogeneity and completeness (Rosenberg & Hirschberg) of an "induced clustering". The text names no
clustering algorithm; featspace uses k-means with k = the number of classes present, the usual reading.
Four come from scikit-learn; the silhouette is :func:`silhouette_score` here, the same number as scikit-learn's
(tested to 1e-12) in a fraction of its time on low-dimensional embeddings (below).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    homogeneity_completeness_v_measure,
)

from featspace.metrics._inputs import ArrayLike, embeddings_array, labels_array

__all__ = ["cluster_validity", "silhouette_score", "silhouette_subsample"]

CLUSTER_KEYS = ("silhouette", "davies_bouldin", "calinski_harabasz", "homogeneity", "completeness")


def silhouette_subsample(num_samples: int, max_samples: int, seed: int) -> np.ndarray | None:
    """Indices of the rows the silhouette is computed on: ``None`` (all) when ``num_samples <= max_samples``,
    else ``max_samples`` distinct rows drawn uniformly without replacement by ``numpy.random.default_rng(seed)``."""
    if num_samples <= max_samples:
        return None
    return np.sort(np.random.default_rng(seed).choice(num_samples, size=max_samples, replace=False))


def silhouette_score(embeddings: ArrayLike, labels: ArrayLike, *, max_block_entries: int = 4_000_000) -> float:
    """Mean silhouette (Rousseeuw 1987) of ``embeddings`` [N, d] partitioned by ``labels`` [N], Euclidean.

    s(i) = (b(i) − a(i)) / max(a(i), b(i)), a(i) the mean distance from i to the other members of its class,
    b(i) the smallest mean distance from i to the members of another class; s(i) = 0 for a class of one, as in
    ``sklearn.metrics.silhouette_score``, which this equals (to 1e-12 in the tests). Needs at least two classes
    and fewer classes than samples.

    Why not scikit-learn's: it sums each distance row per class with a bincount over all N labels; here the rows
    are sorted by class once, so a class's sum is a contiguous slice, and float64 distances are computed in blocks
    of at most ``max_block_entries`` entries (never an N×N matrix). 10,000 embeddings on two cores: 2-d 0.4 s
    against 2.3 s, 64-d 0.6 s against 1.0 s; at 512-d both are the matmul, about 2.3 s.
    """
    x = torch.as_tensor(embeddings_array(embeddings), dtype=torch.float64)
    _, classes = torch.unique(torch.as_tensor(labels_array(labels, x.shape[0])), return_inverse=True)
    n = x.shape[0]
    counts = torch.bincount(classes)
    if not 2 <= counts.numel() < n:
        raise ValueError(f"the silhouette needs 2 to N - 1 classes, got {counts.numel()} for {n} samples")
    order = torch.argsort(classes, stable=True)
    x, classes = x[order], classes[order]
    ends = torch.cumsum(counts, 0).tolist()
    starts = [0] + ends[:-1]
    counts = counts.double()
    rows = max(1, max_block_entries // n)
    # narrow embeddings: the differences themselves (exact for coincident points, and cheaper than a matmul at
    # this width); wider ones: the ‖a‖² + ‖b‖² − 2a·b expansion, one matmul per block, as scikit-learn computes it
    mode = "donot_use_mm_for_euclid_dist" if x.shape[1] <= 8 else "use_mm_for_euclid_dist"
    total = 0.0
    for first in range(0, n, rows):
        last = min(n, first + rows)
        distances = torch.cdist(x[first:last], x, compute_mode=mode)
        sums = torch.stack([distances[:, a:b].sum(1) for a, b in zip(starts, ends)], 1)       # [b, C]
        block = torch.arange(last - first)
        own = classes[first:last]
        # the expansion can leave a rounding residue at distance(i, i): take it out of i's own class sum
        sums[block, own] -= distances[block, torch.arange(first, last)]
        others = counts[own] - 1
        a = sums[block, own] / others.clamp_min(1)
        b = (sums / counts).index_put_((block, own), torch.tensor(torch.inf, dtype=torch.float64)).amin(1)
        values = torch.nan_to_num((b - a) / torch.maximum(a, b))  # a = b = 0 (coincident points): 0, as sklearn
        total += float(torch.where(others > 0, values, 0.0).sum())
    return total / n


def cluster_validity(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    seed: int = 0,
    max_samples: int = 10_000,
    kmeans_restarts: int = 3,
) -> dict[str, float]:
    """LACE Table 2's cluster validity scores of ``embeddings`` [N, d] partitioned by ``labels`` [N].

    Returns a dict with
    - ``silhouette`` (−1..1, higher is better): mean silhouette, Euclidean distance. It needs all N² pairwise
      distances, so above ``max_samples`` rows it is computed on a uniform random subset of ``max_samples``
      rows drawn with ``seed`` (see ``silhouette_subsample``); 10 000 rows take a few seconds on two cores.
    - ``davies_bouldin`` (≥ 0, lower is better) and ``calinski_harabasz`` (≥ 0, higher is better), on all rows
      (both are O(N·d)).
    - ``homogeneity`` and ``completeness`` (0..1) of k-means (k = number of distinct labels, k-means++
      with ``kmeans_restarts`` restarts and ``random_state=seed``) against the labels, on all rows.

    Scores that are undefined (fewer than two classes, or every sample its own class) are NaN.
    """
    x = embeddings_array(embeddings)
    y = labels_array(labels, x.shape[0])
    if max_samples < 2:
        raise ValueError(f"max_samples must be at least 2, got {max_samples}")
    result = dict.fromkeys(CLUSTER_KEYS, float("nan"))
    num_labels = len(np.unique(y))
    if num_labels < 2 or num_labels >= x.shape[0]:
        return result

    subset = silhouette_subsample(x.shape[0], max_samples, seed)
    x_sil, y_sil = (x, y) if subset is None else (x[subset], y[subset])
    if 2 <= len(np.unique(y_sil)) < len(y_sil):
        result["silhouette"] = silhouette_score(x_sil, y_sil)
    with warnings.catch_warnings():
        # identical embeddings make both scores degenerate (sklearn warns and returns 0 / 1); not an error here
        warnings.simplefilter("ignore", RuntimeWarning)
        result["davies_bouldin"] = float(davies_bouldin_score(x, y))
        result["calinski_harabasz"] = float(calinski_harabasz_score(x, y))

    with warnings.catch_warnings():
        # collapsed embeddings give fewer distinct points than k; k-means then says so, and the scores show it
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(n_clusters=num_labels, n_init=kmeans_restarts, random_state=seed).fit_predict(x)
    homogeneity, completeness, _ = homogeneity_completeness_v_measure(y, clusters)
    result["homogeneity"] = float(homogeneity)
    result["completeness"] = float(completeness)
    return result
