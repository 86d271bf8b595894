"""Episode sampling statistics; nearest centroid and LaplacianShot against literal per-episode float64 loops;
the 95% confidence interval against the normal approximation of simulated Bernoulli accuracies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from featspace.metrics.fewshot import (
    confidence_interval,
    evaluate_episodes,
    laplacianshot_assignments,
    laplacianshot_predict,
    ncc_predict,
    normalize_features,
    rectify_prototypes,
    sample_episodes,
)


def _labels(counts):
    return torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])


# ------------------------------------------------------------------------------------------ sampling
def test_every_episode_has_n_distinct_classes_and_disjoint_support_query():
    labels = _labels([30, 25, 40, 21, 50, 33, 22])[torch.randperm(221, generator=torch.Generator().manual_seed(1))]
    idx = sample_episodes(labels, episodes=300, ways=5, shots=3, queries=4, seed=3)
    assert idx.support.shape == (300, 5, 3) and idx.query.shape == (300, 5, 4) and idx.classes.shape == (300, 5)
    for e in range(300):
        assert len(set(idx.classes[e].tolist())) == 5
        drawn = torch.cat([idx.support[e], idx.query[e]], dim=1)  # [N, K+Q]
        assert len(set(drawn.flatten().tolist())) == 5 * 7  # no sample twice in an episode
        for n in range(5):
            assert (labels[drawn[n]] == idx.classes[e, n]).all()


def test_class_and_sample_frequencies_are_uniform():
    counts = [20, 30, 25, 20, 40, 22, 35, 28]
    labels = _labels(counts)
    episodes, ways, shots, queries = 4000, 3, 2, 5
    idx = sample_episodes(labels, episodes=episodes, ways=ways, shots=shots, queries=queries, seed=0)
    class_freq = torch.bincount(idx.classes.flatten(), minlength=len(counts)).double()
    expected = episodes * ways / len(counts)
    # chi-square with 7 degrees of freedom: P(χ² > 24.3) ≈ 0.001
    assert float(((class_freq - expected) ** 2 / expected).sum()) < 24.3
    # within class 4 (40 samples), each sample is support with probability K/40 and drawn with probability (K+Q)/40
    chosen = (idx.classes == 4).sum().item()
    support_hits = torch.bincount(idx.support[idx.classes == 4].flatten(), minlength=labels.numel())[labels == 4]
    drawn_hits = support_hits + torch.bincount(idx.query[idx.classes == 4].flatten(),
                                               minlength=labels.numel())[labels == 4]
    for hits, p in ((support_hits, shots / 40), (drawn_hits, (shots + queries) / 40)):
        mean = chosen * p
        sd = math.sqrt(chosen * p * (1 - p))
        assert abs(hits.double().mean().item() - mean) < 1e-9 + 4 * sd / math.sqrt(40)
        assert (hits - mean).abs().max().item() < 5 * sd


def test_sampling_is_deterministic_and_depends_on_the_seed():
    labels = _labels([25] * 10)
    a = sample_episodes(labels, episodes=50, seed=7)
    b = sample_episodes(labels, episodes=50, seed=7)
    c = sample_episodes(labels, episodes=50, seed=8)
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    assert not torch.equal(a.query, c.query)
    # the first episodes do not depend on how many are drawn
    longer = sample_episodes(labels, episodes=2000, seed=7)
    assert torch.equal(longer.query[:50], a.query)


def test_sampling_rejects_impossible_episodes():
    with pytest.raises(ValueError, match="at least 5 classes"):
        sample_episodes(_labels([30] * 4), episodes=3)
    with pytest.raises(ValueError, match="need 16 samples"):
        sample_episodes(_labels([30, 30, 30, 30, 15]), episodes=3)
    with pytest.raises(ValueError, match="integers"):
        sample_episodes(torch.zeros(100), episodes=3)


# ------------------------------------------------------------------------------------------ normalization
def test_normalizations():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(normalize_features(x, "none"), x)
    l2 = normalize_features(x, "l2")
    torch.testing.assert_close(l2[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(l2[1], torch.zeros(2))  # a zero vector stays zero, no NaN
    cl2n = normalize_features(x, "cl2n", base_mean=torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(cl2n[0], torch.tensor([2.0, 3.0]) / math.sqrt(13))
    assert torch.equal(cl2n[2], torch.zeros(2))
    with pytest.raises(ValueError, match="base_mean"):
        normalize_features(x, "cl2n")
    with pytest.raises(ValueError, match="valid"):
        normalize_features(x, "zca")


# ------------------------------------------------------------------------------------------ classifiers
def _episode_data(seed=0, episodes=6, ways=3, shots=2, queries=4, dim=5, spread=1.2):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(episodes, ways, 1, dim, generator=g, dtype=torch.float64) * spread
    support = centers + torch.randn(episodes, ways, shots, dim, generator=g, dtype=torch.float64)
    query = (centers + torch.randn(episodes, ways, queries, dim, generator=g, dtype=torch.float64)).flatten(1, 2)
    return support, query


def reference_ncc(support, query):
    """Nearest class centroid, one episode and one query at a time, distances written out."""
    out = torch.zeros(query.shape[:2], dtype=torch.long)
    for e in range(support.shape[0]):
        centroids = [sum(support[e, n, k] for k in range(support.shape[2])) / support.shape[2]
                     for n in range(support.shape[1])]
        for m in range(query.shape[1]):
            distances = [float(sum((query[e, m, j] - c[j]) ** 2 for j in range(query.shape[2]))) for c in centroids]
            out[e, m] = distances.index(min(distances))
    return out


def test_ncc_matches_a_literal_loop():
    support, query = _episode_data(seed=1, episodes=8, ways=4, shots=3, queries=5)
    assert torch.equal(ncc_predict(support, query), reference_ncc(support, query))


def _softmax_rows(a):
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def reference_rectify(support, query, temperature=10.0):
    """The authors' prototype rectification for one episode, in numpy, including their use of the mean."""
    ways, shots, dim = support.shape
    gallery = support.reshape(ways * shots, dim)
    query = query + (gallery.mean(0) - query.mean(0))[None, :]
    pool = np.concatenate([gallery, query], axis=0)
    means = support.mean(1)
    cos = (pool / np.linalg.norm(pool, axis=1, keepdims=True)) @ (means / np.linalg.norm(means, axis=1,
                                                                                           keepdims=True)).T
    predict = cos.argmax(1)
    weights = _softmax_rows(temperature * cos)
    prototypes = np.stack([np.mean(weights[predict == n, n][:, None] * pool[predict == n], axis=0)
                           for n in np.unique(predict)])
    assert prototypes.shape[0] == ways, "the reference needs every class predicted at least once"
    return prototypes, query


def reference_laplacianshot(support, query, lam, knn, rectify=False, max_iter=20, tol=1e-6):
    """LaplacianShot for one episode, literally: unary = squared distances to the prototypes, a sparse kNN
    affinity from scikit-learn's NearestNeighbors on the queries (the query itself first, dropped), and the
    bound update Y ← softmax(−A + λ W Y) with its energy-based stopping rule. Returns Y [M, N]."""
    support, query = support.numpy(), query.numpy()
    if rectify:
        prototypes, query = reference_rectify(support, query)
    else:
        prototypes = support.mean(1)
    unary = np.array([[np.sum((q - p) ** 2) for p in prototypes] for q in query])  # [M, N]
    m = query.shape[0]
    _, neighbours = NearestNeighbors(n_neighbors=knn).fit(query).kneighbors(query)
    rows = np.repeat(np.arange(m), knn - 1)
    kernel = sparse.csc_matrix((np.ones(m * (knn - 1)), (rows, neighbours[:, 1:].flatten())), shape=(m, m))
    y = _softmax_rows(-unary)
    previous = float("inf")
    for step in range(max_iter):
        y = _softmax_rows(-unary + lam * kernel.dot(y))
        pairwise = kernel.dot(y)
        energy = float(np.sum(y * np.log(np.maximum(y, 1e-20)) + unary * y - lam * pairwise * y))
        if step > 1 and abs(energy - previous) <= tol * abs(previous):
            break
        previous = energy
    return torch.from_numpy(y)


@pytest.mark.parametrize("lam,knn", [(1.0, 3), (0.5, 5), (0.8, 7)])
def test_laplacianshot_matches_a_literal_transcription(lam, knn):
    support, query = _episode_data(seed=2, episodes=10, ways=3, shots=2, queries=4, spread=0.8)
    ours = laplacianshot_assignments(support, query, lam=lam, knn=knn)
    reference = torch.stack([reference_laplacianshot(support[e], query[e], lam, knn) for e in range(10)])
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-12)
    # the Laplacian term must matter on these inputs, or the comparison would not test it
    assert not torch.equal(laplacianshot_predict(support, query, lam=lam, knn=knn), ncc_predict(support, query))


def test_laplacianshot_with_rectified_prototypes_matches_the_authors_code():
    support, query = _episode_data(seed=4, episodes=6, ways=3, shots=2, queries=5, spread=2.5)
    ours = laplacianshot_assignments(support, query, lam=1.0, knn=3, rectify=True)
    reference = torch.stack([reference_laplacianshot(support[e], query[e], 1.0, 3, rectify=True) for e in range(6)])
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-12)


def test_rectification_keeps_the_plain_mean_of_a_class_nobody_is_assigned_to():
    support = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[0.9, 0.1]]]], dtype=torch.float64)  # class 2 ≈ class 0
    query = torch.tensor([[[1.0, 0.05], [0.05, 1.0], [1.0, -0.05]]], dtype=torch.float64)
    prototypes, _ = rectify_prototypes(support, query)
    assert torch.isfinite(prototypes).all()


def test_laplacianshot_without_the_laplacian_is_the_nearest_centroid():
    support, query = _episode_data(seed=3, episodes=20, ways=5, shots=1, queries=3)
    assert torch.equal(laplacianshot_predict(support, query, lam=0.0), ncc_predict(support, query))


# ------------------------------------------------------------------------------------------ protocol
def test_evaluate_episodes_against_a_per_episode_loop_and_independent_of_chunking():
    g = torch.Generator().manual_seed(5)
    labels = _labels([22] * 7)
    features = torch.randn(7, 6, generator=g, dtype=torch.float64)[labels] + torch.randn(154, 6, generator=g,
                                                                                        dtype=torch.float64)
    base_mean = torch.randn(6, generator=g, dtype=torch.float64)
    idx = sample_episodes(labels, episodes=40, ways=5, shots=2, queries=3, seed=11)
    result = evaluate_episodes(features, indices=idx, norm="cl2n", base_mean=base_mean)
    chunked = evaluate_episodes(features, indices=idx, norm="cl2n", base_mean=base_mean, chunk_size=7)
    assert torch.equal(result.accuracies, chunked.accuracies)
    normalized = features - base_mean
    normalized = normalized / normalized.norm(dim=1, keepdim=True)
    expected = []
    for e in range(40):
        support = normalized[idx.support[e]].unsqueeze(0)
        query = normalized[idx.query[e].flatten()].unsqueeze(0)
        truth = torch.arange(5).repeat_interleave(3)
        expected.append((reference_ncc(support, query)[0] == truth).double().mean().item())
    assert result.accuracies.tolist() == pytest.approx(expected)
    assert result.mean == pytest.approx(float(np.mean(expected)))
    assert result.ci95 == pytest.approx(1.96 * float(np.std(expected)) / math.sqrt(40))
    lshot = evaluate_episodes(features, indices=idx, method="laplacianshot", norm="l2")
    assert lshot.episodes == 40 and 0.0 <= lshot.mean <= 1.0
    with pytest.raises(ValueError, match="valid"):
        evaluate_episodes(features, labels, method="svm")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_episodes(torch.full((154, 6), float("nan")), labels)


def test_confidence_interval_follows_the_normal_approximation():
    """Per-episode accuracies of 75 Bernoulli(p) queries: the half-width is 1.96·√(p(1−p)/75)/√E and the
    interval covers p in about 95% of repeated experiments."""
    rng = np.random.default_rng(0)
    p, queries, episodes, repeats = 0.62, 75, 2000, 400
    accuracies = rng.binomial(queries, p, size=(repeats, episodes)) / queries
    expected_half_width = 1.96 * math.sqrt(p * (1 - p) / queries) / math.sqrt(episodes)
    covered = 0
    for row in accuracies:
        mean, half_width, _ = confidence_interval(torch.from_numpy(row))
        assert half_width == pytest.approx(expected_half_width, rel=0.06)
        covered += abs(mean - p) <= half_width
    assert 0.92 <= covered / repeats <= 0.98
