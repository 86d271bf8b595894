"""Cluster validity of embeddings grouped by their labels (LACE, 000_96dfa70546181807.txt, Table 2, Sec. 4.2).

LACE reports, on the test features of its trained networks, three scores of the partition of the
features into their true classes — Silhouette (Rousseeuw), Davies–Bouldin and Calinski–Harabasz — and
the homogeneity and completeness (Rosenberg & Hirschberg) of an "induced clustering". The text names no
clustering algorithm; featspace uses k-means with k = the number of classes present, the usual reading.
All five come from scikit-learn.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    homogeneity_completeness_v_measure,
    silhouette_score,
)

from featspace.metrics._inputs import ArrayLike, embeddings_array, labels_array

__all__ = ["cluster_validity", "silhouette_subsample"]

CLUSTER_KEYS = ("silhouette", "davies_bouldin", "calinski_harabasz", "homogeneity", "completeness")


def silhouette_subsample(num_samples: int, max_samples: int, seed: int) -> np.ndarray | None:
    """Indices of the rows the silhouette is computed on: ``None`` (all) when ``num_samples <= max_samples``,
    else ``max_samples`` distinct rows drawn uniformly without replacement by ``numpy.random.default_rng(seed)``."""
    if num_samples <= max_samples:
        return None
    return np.sort(np.random.default_rng(seed).choice(num_samples, size=max_samples, replace=False))


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
        result["silhouette"] = float(silhouette_score(x_sil, y_sil, metric="euclidean"))
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
