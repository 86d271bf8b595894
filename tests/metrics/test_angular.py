"""angular_separation: chunked pairs == a literal double loop, D_EM == SciPy's wasserstein_distance,
D_KL == SciPy's entropy on the same histograms, and the sampled path close to the exact one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy, wasserstein_distance

from featspace.metrics import AngularSeparation, angular, angular_separation


def _data(n=40, d=6, c=3, seed=0, spread=0.7):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    y = rng.integers(0, c, n)
    return centres[y] + spread * rng.normal(size=(n, d)), y


def brute_force_angles(x, y):
    """Every unordered pair i < j, angle = arccos(xᵢ·xⱼ / (‖xᵢ‖‖xⱼ‖)) in degrees, split by label equality."""
    positive, negative = [], []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dot = sum(a * b for a, b in zip(x[i], x[j]))
            cosine = dot / (math.sqrt(sum(a * a for a in x[i])) * math.sqrt(sum(b * b for b in x[j])))
            angle = math.degrees(math.acos(max(-1.0, min(1.0, cosine))))
            (positive if y[i] == y[j] else negative).append(angle)
    return np.array(positive), np.array(negative)


def test_chunked_pairs_equal_brute_force(monkeypatch):
    x, y = _data()
    positive, negative = brute_force_angles(x, y)
    monkeypatch.setattr(angular, "_BLOCK_ENTRIES", 3 * len(x))  # 3 rows per block: many blocks and a ragged end
    result = angular_separation(x, y)
    assert not result.sampled
    assert result.n_positive_pairs + result.n_negative_pairs == len(x) * (len(x) - 1) // 2
    np.testing.assert_allclose(result.positive_angles, positive, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.negative_angles, negative, rtol=0, atol=1e-9)
    assert result.positive_mean == pytest.approx(positive.mean(), abs=1e-9)
    assert result.negative_mean == pytest.approx(negative.mean(), abs=1e-9)


def test_d_em_matches_scipy_wasserstein():
    x, y = _data(n=70, seed=1)
    result = angular_separation(torch.from_numpy(x), torch.from_numpy(y))
    expected = wasserstein_distance(result.positive_angles, result.negative_angles)
    assert result.d_em == pytest.approx(expected, rel=1e-10)
    # and on arbitrary samples with ties and unequal sizes
    rng = np.random.default_rng(2)
    u, v = rng.integers(0, 20, 31).astype(float), rng.normal(size=17) * 5
    assert angular.wasserstein_1d(u, v) == pytest.approx(wasserstein_distance(u, v), rel=1e-12)


@pytest.mark.parametrize("bins, smoothing", [(180, 1e-6), (36, 1e-3), (90, 0.0)])
def test_d_kl_matches_scipy_entropy(bins, smoothing):
    x, y = _data(n=80, seed=3, spread=2.0)  # overlapping, so unsmoothed KL is finite too
    result = angular_separation(x, y, bins=bins, kl_smoothing=smoothing)
    edges = np.linspace(0, 180, bins + 1)
    np.testing.assert_array_equal(result.histogram_edges, edges)
    positive_counts, _ = np.histogram(result.positive_angles, bins=edges)
    negative_counts, _ = np.histogram(result.negative_angles, bins=edges)
    np.testing.assert_allclose(result.positive_hist, positive_counts / positive_counts.sum())
    np.testing.assert_allclose(result.negative_hist, negative_counts / negative_counts.sum())
    assert result.positive_hist.sum() == pytest.approx(1.0)
    p, q = positive_counts / positive_counts.sum(), negative_counts / negative_counts.sum()
    expected = entropy(p + smoothing, q + smoothing)  # entropy renormalizes: (h + ε)/(1 + bins·ε)
    if math.isinf(expected):
        assert math.isinf(result.d_kl)
    else:
        assert result.d_kl == pytest.approx(expected, rel=1e-10)


def test_sampled_path_is_close_to_exact_and_seeded():
    x, y = _data(n=700, d=16, c=5, seed=4, spread=1.0)
    exact = angular_separation(x, y)
    sampled = angular_separation(x, y, max_pairs=60_000, seed=7)
    assert not exact.sampled and sampled.sampled
    assert sampled.n_positive_pairs + sampled.n_negative_pairs == 60_000
    # positives are ~1/5 of pairs: binomial fraction within 5 standard errors
    fraction = exact.n_positive_pairs / (exact.n_positive_pairs + exact.n_negative_pairs)
    assert abs(sampled.n_positive_pairs / 60_000 - fraction) < 5 * math.sqrt(fraction * (1 - fraction) / 60_000)
    for name, angles in (("positive", exact.positive_angles), ("negative", exact.negative_angles)):
        estimate = getattr(sampled, f"{name}_mean")
        standard_error = angles.std() / math.sqrt(getattr(sampled, f"n_{name}_pairs"))
        assert abs(estimate - angles.mean()) < 5 * standard_error
    assert sampled.d_em == pytest.approx(exact.d_em, abs=1.0)  # D_EM here is ~20°
    assert sampled.d_kl == pytest.approx(exact.d_kl, rel=0.1)
    again = angular_separation(x, y, max_pairs=60_000, seed=7)
    np.testing.assert_array_equal(again.positive_angles, sampled.positive_angles)
    assert angular_separation(x, y, max_pairs=60_000, seed=8).d_em != sampled.d_em


def test_sampled_pairs_are_uniform_over_unordered_pairs():
    n, draws = 5, 200_000
    first, second = angular.sample_pairs(n, draws, seed=0)
    assert (first != second).all() and first.min() >= 0 and max(first.max(), second.max()) < n
    low, high = np.minimum(first, second), np.maximum(first, second)
    counts = np.bincount(low * n + high, minlength=n * n)[[i * n + j for i in range(n) for j in range(i + 1, n)]]
    expected = draws / (n * (n - 1) / 2)
    assert np.abs(counts - expected).max() < 5 * math.sqrt(expected)  # each pair within 5 standard errors


def test_sampled_path_uses_the_sampled_pairs():
    x, y = _data(n=30, seed=9)
    positive, negative, sampled = angular.pair_angles(x, y, max_pairs=100, seed=4)
    first, second = angular.sample_pairs(30, 100, seed=4)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(np.sum(unit[first] * unit[second], axis=1), -1, 1)))
    same = y[first] == y[second]
    assert sampled
    np.testing.assert_allclose(positive, angles[same], atol=1e-3)  # float32 cosines on the sampled path
    np.testing.assert_allclose(negative, angles[~same], atol=1e-3)


def test_degenerate_inputs():
    x, _ = _data(n=5)
    result = angular_separation(x, np.arange(5))  # every label distinct: no positive pair
    assert isinstance(result, AngularSeparation)
    assert result.n_positive_pairs == 0 and math.isnan(result.d_em) and math.isnan(result.d_kl)
    assert math.isnan(result.positive_mean) and result.positive_hist.sum() == 0
    zeros = angular_separation(np.zeros((4, 3)), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(zeros.positive_angles, 90.0)  # a zero vector is orthogonal to everything
    identical = angular_separation(np.ones((4, 3)), np.array([0, 0, 1, 1]))
    assert np.isfinite(identical.positive_angles).all() and identical.d_em == pytest.approx(0.0, abs=1e-5)


def test_bad_input_raises():
    x, y = _data()
    for kwargs in ({"bins": 0}, {"max_pairs": 0}, {"kl_smoothing": -1.0}):
        with pytest.raises(ValueError):
            angular_separation(x, y, **kwargs)
    with pytest.raises(ValueError):
        angular_separation(x[:1], y[:1])
    with pytest.raises(ValueError):
        angular_separation(np.full_like(x, np.nan), y)
