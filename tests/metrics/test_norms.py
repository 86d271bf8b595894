"""POD Table 1 (accuracy below/above the mean feature norm) and Table 5 (variance of the normalized feature
dimensions) against literal float64 transcriptions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featspace.metrics import norm_split_accuracy, normalized_dimension_variance


def _data(n=50, d=6, c=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.2, 3, size=(n, 1))
    return x, rng.normal(size=(n, c)), rng.integers(0, c, n)


def test_norm_split_matches_transcription():
    x, scores, y = _data()
    norms = [math.sqrt(sum(v * v for v in row)) for row in x]
    mean = sum(norms) / len(norms)
    low = [i for i in range(len(x)) if norms[i] < mean]
    high = [i for i in range(len(x)) if norms[i] >= mean]
    correct = [int(np.argmax(scores[i]) == y[i]) for i in range(len(x))]
    result = norm_split_accuracy(torch.from_numpy(x), scores, y)
    assert result["low_norm_accuracy"] == pytest.approx(sum(correct[i] for i in low) / len(low), abs=1e-15)
    assert result["high_norm_accuracy"] == pytest.approx(sum(correct[i] for i in high) / len(high), abs=1e-15)
    assert (result["low_norm_count"], result["high_norm_count"]) == (len(low), len(high))
    assert result["mean_norm"] == pytest.approx(mean, rel=1e-12)


def test_norm_split_with_equal_norms_puts_everything_high():
    x = np.eye(4)
    result = norm_split_accuracy(x, x, np.arange(4))
    assert result["high_norm_count"] == 4 and result["high_norm_accuracy"] == 1.0
    assert math.isnan(result["low_norm_accuracy"])


def test_normalized_dimension_variance_matches_transcription():
    x, _, _ = _data(seed=1)
    x[0] = 0  # stays a zero vector
    n, d = x.shape
    unit = []
    for row in x:
        norm = math.sqrt(sum(v * v for v in row))
        unit.append([v / norm if norm > 0 else 0.0 for v in row])
    per_dimension = []
    for k in range(d):
        column = [unit[i][k] for i in range(n)]
        mean = sum(column) / n
        per_dimension.append(sum((v - mean) ** 2 for v in column) / n)
    mean = sum(per_dimension) / d
    expected = sum((v - mean) ** 2 for v in per_dimension) / d
    assert normalized_dimension_variance(x) == pytest.approx(expected, rel=1e-12)


def test_normalized_dimension_variance_is_scale_free_and_zero_when_balanced():
    x, _, _ = _data(seed=2)
    scales = np.random.default_rng(3).uniform(0.1, 10, size=(len(x), 1))
    assert normalized_dimension_variance(x * scales) == pytest.approx(normalized_dimension_variance(x), rel=1e-10)
    balanced = np.vstack([np.eye(3), -np.eye(3)])  # every dimension carries the same energy
    assert normalized_dimension_variance(balanced) == pytest.approx(0.0, abs=1e-18)


def test_bad_input_raises():
    x, scores, y = _data()
    with pytest.raises(ValueError):
        norm_split_accuracy(x, scores[:-1], y)
    with pytest.raises(ValueError):
        norm_split_accuracy(x, scores[:, :2], y)  # labels up to 3
    with pytest.raises(ValueError):
        normalized_dimension_variance(x[0])
