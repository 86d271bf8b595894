"""cluster_validity against literal float64 transcriptions of the definitions LACE Table 2 cites."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from featspace.metrics import cluster_validity
from featspace.metrics.clustering import silhouette_subsample


def _data(n=60, d=3, c=3, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 3
    y = np.arange(n) % c
    return centres[y] + spread * rng.normal(size=(n, d)), y


def _dist(a, b):
    return math.sqrt(sum((p - q) ** 2 for p, q in zip(a, b)))


def reference_silhouette(x, y):
    """Rousseeuw 1987: s(i) = (b − a)/max(a, b), a the mean distance to its own class, b to the nearest other."""
    total = 0.0
    for i in range(len(x)):
        own = [_dist(x[i], x[j]) for j in range(len(x)) if y[j] == y[i] and j != i]
        a = sum(own) / len(own) if own else 0.0
        b = min(
            sum(_dist(x[i], x[j]) for j in range(len(x)) if y[j] == c) / sum(1 for j in range(len(x)) if y[j] == c)
            for c in set(y.tolist()) if c != y[i]
        )
        total += 0.0 if not own else (b - a) / max(a, b)
    return total / len(x)


def _means(x, y):
    return {c: [sum(x[i][k] for i in range(len(x)) if y[i] == c) / sum(1 for v in y if v == c) for k in range(x.shape[1])]
            for c in sorted(set(y.tolist()))}


def reference_davies_bouldin(x, y):
    """Davies & Bouldin 1979: mean over clusters of max_j (S_i + S_j)/M_ij, S the mean distance to the centroid."""
    means = _means(x, y)
    scatter = {c: sum(_dist(x[i], means[c]) for i in range(len(x)) if y[i] == c) / sum(1 for v in y if v == c)
               for c in means}
    return sum(max((scatter[i] + scatter[j]) / _dist(means[i], means[j]) for j in means if j != i) for i in means) / len(means)


def reference_calinski_harabasz(x, y):
    """Caliński & Harabasz 1974: [tr B/(k−1)] / [tr W/(n−k)]."""
    means, n, k = _means(x, y), len(x), len(set(y.tolist()))
    grand = [sum(row[d] for row in x) / n for d in range(x.shape[1])]
    between = sum(sum(1 for v in y if v == c) * _dist(means[c], grand) ** 2 for c in means)
    within = sum(_dist(x[i], means[y[i]]) ** 2 for i in range(n))
    return (between / (k - 1)) / (within / (n - k))


def _entropy(groups):
    n = len(groups)
    counts = {g: groups.count(g) for g in set(groups)}
    return -sum(v / n * math.log(v / n) for v in counts.values())


def _conditional_entropy(a, b):
    """H(A | B) of two labelings."""
    n = len(a)
    joint = {}
    for p, q in zip(a, b):
        joint[(p, q)] = joint.get((p, q), 0) + 1
    b_counts = {q: b.count(q) for q in set(b)}
    return -sum(v / n * math.log(v / b_counts[q]) for (p, q), v in joint.items())


def reference_homogeneity_completeness(classes, clusters):
    """Rosenberg & Hirschberg 2007: h = 1 − H(C|K)/H(C), c = 1 − H(K|C)/H(K)."""
    classes, clusters = classes.tolist(), clusters.tolist()
    h = 1.0 - _conditional_entropy(classes, clusters) / _entropy(classes)
    c = 1.0 - _conditional_entropy(clusters, classes) / _entropy(clusters)
    return h, c


def test_scores_match_transcriptions():
    x, y = _data(spread=2.0)  # overlapping, so k-means makes mistakes and every score is non-trivial
    result = cluster_validity(x, y, seed=3)
    assert result["silhouette"] == pytest.approx(reference_silhouette(x, y), rel=1e-10)
    assert result["davies_bouldin"] == pytest.approx(reference_davies_bouldin(x, y), rel=1e-10)
    assert result["calinski_harabasz"] == pytest.approx(reference_calinski_harabasz(x, y), rel=1e-10)
    clusters = KMeans(n_clusters=3, n_init=3, random_state=3).fit_predict(x)
    h, c = reference_homogeneity_completeness(y, clusters)
    assert 0 < h < 1
    assert result["homogeneity"] == pytest.approx(h, rel=1e-10)
    assert result["completeness"] == pytest.approx(c, rel=1e-10)


def test_separated_clusters_are_found_and_torch_input_accepted():
    x, y = _data(spread=0.05)
    result = cluster_validity(torch.from_numpy(x).float(), torch.from_numpy(y))
    assert result["homogeneity"] == pytest.approx(1.0)
    assert result["completeness"] == pytest.approx(1.0)
    assert result["silhouette"] > 0.9


def test_silhouette_subsample_is_seeded_and_matches_the_subset():
    x, y = _data(n=300, spread=1.5)
    result = cluster_validity(x, y, seed=5, max_samples=40)
    subset = silhouette_subsample(300, 40, 5)
    assert len(subset) == 40 and len(set(subset.tolist())) == 40
    assert result["silhouette"] == pytest.approx(reference_silhouette(x[subset], y[subset]), rel=1e-10)
    assert cluster_validity(x, y, seed=5, max_samples=40)["silhouette"] == result["silhouette"]
    assert silhouette_subsample(300, 300, 5) is None
    # the other scores always use every row
    assert result["calinski_harabasz"] == pytest.approx(reference_calinski_harabasz(x, y), rel=1e-10)


def test_undefined_cases_are_nan_not_errors():
    x, y = _data(n=6)
    assert all(math.isnan(v) for v in cluster_validity(x, np.zeros(6, dtype=np.int64)).values())
    assert all(math.isnan(v) for v in cluster_validity(x, np.arange(6)).values())
    collapsed = cluster_validity(np.zeros((6, 3)), y)  # identical embeddings: finite, worst-case scores
    assert collapsed["homogeneity"] == pytest.approx(0.0)


def test_bad_input_raises():
    x, y = _data()
    with pytest.raises(ValueError):
        cluster_validity(x, y[:-1])
    with pytest.raises(ValueError):
        cluster_validity(x, y, max_samples=1)


@pytest.mark.parametrize("case", ["blocks", "sparse_labels", "singleton", "duplicates", "collapsed", "float32",
                                  "wide"])
def test_silhouette_equals_scikit_learns(case):
    from sklearn.metrics import silhouette_score as sklearn_silhouette

    from featspace.metrics.clustering import silhouette_score

    x, y = _data(n=90, d=20 if case == "wide" else 4, c=4, seed=2, spread=1.5)
    if case == "sparse_labels":
        y = np.array([3, 7, 9, 40])[y]  # labels need not be 0..C-1
    elif case == "singleton":
        y = y.copy()
        y[0] = 9  # a class of one: s = 0 for it
    elif case == "duplicates":
        x = np.concatenate([x, x[:10]])
        y = np.concatenate([y, y[:10]])
    elif case == "collapsed":
        x = np.zeros_like(x)  # a = b = 0 everywhere
    elif case == "float32":
        x = x.astype(np.float32)
    expected = sklearn_silhouette(x, y, metric="euclidean")
    if case in ("duplicates", "float32"):
        # scikit-learn's own distances are off here (the expansion's rounding at coincident points, float32
        # arithmetic), by ~1e-8: the literal transcription is the reference, scikit-learn's number is close
        assert silhouette_score(x, y) == pytest.approx(expected, rel=1e-6)
        expected = reference_silhouette(x.astype(np.float64), y)
    # blocks of 3 rows exercise the row loop; the default takes all 90 rows at once
    for entries in (3 * len(x), 4_000_000):
        assert silhouette_score(x, y, max_block_entries=entries) == pytest.approx(expected, rel=1e-12, abs=1e-14)
    if case == "singleton":
        assert silhouette_score(x, y) == pytest.approx(reference_silhouette(x, y), rel=1e-10)


def test_silhouette_needs_two_to_n_minus_one_classes():
    from featspace.metrics.clustering import silhouette_score

    x, _ = _data(n=6)
    for labels in (np.zeros(6, dtype=np.int64), np.arange(6)):
        with pytest.raises(ValueError, match="2 to N - 1 classes"):
            silhouette_score(x, labels)
