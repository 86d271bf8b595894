"""accuracy, class_means and nearest-centroid accuracy against scikit-learn and literal float64 loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from sklearn.neighbors import NearestCentroid

from featspace.metrics import accuracy, class_means, classification, nearest_centroid_accuracy, nearest_centroid_predict


def _data(n=90, d=5, c=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 2
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)  # every class present
    return centres[y] + rng.normal(size=(n, d)), y


def test_accuracy_matches_sklearn():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(50, 6))
    labels = rng.integers(0, 6, 50)
    assert accuracy(scores, labels) == pytest.approx(accuracy_score(labels, scores.argmax(1)), abs=0)
    assert accuracy(torch.from_numpy(scores).to(torch.bfloat16), torch.from_numpy(labels)) == pytest.approx(
        accuracy_score(labels, torch.from_numpy(scores).to(torch.bfloat16).float().numpy().argmax(1)))


def test_class_means_literal():
    x, y = _data()
    means = class_means(x, y, 5)  # class 4 has no sample
    for c in range(4):
        members = [x[i] for i in range(len(y)) if y[i] == c]
        expected = [sum(m[k] for m in members) / len(members) for k in range(x.shape[1])]
        np.testing.assert_allclose(means[c], expected, rtol=1e-12)
    assert np.isnan(means[4]).all()


def test_nearest_centroid_euclidean_matches_sklearn():
    x, y = _data(seed=2)
    xt, yt = _data(seed=3)
    reference = NearestCentroid().fit(x, y).predict(xt)
    assert nearest_centroid_accuracy(x, y, xt, yt) == pytest.approx(np.mean(reference == yt), abs=0)
    np.testing.assert_array_equal(nearest_centroid_predict(xt, class_means(x, y, 4)), reference)


def test_nearest_centroid_cosine_literal():
    x, y = _data(seed=4)
    xt, yt = _data(seed=5)
    # literal: centroids = means of unit training vectors, then the largest cosine wins
    unit = [v / math.sqrt(sum(t * t for t in v)) for v in x]
    centroids = [np.mean([unit[i] for i in range(len(y)) if y[i] == c], axis=0) for c in range(4)]
    correct = 0
    for v, label in zip(xt, yt):
        cosines = [float(v @ c) / (np.linalg.norm(v) * np.linalg.norm(c)) for c in centroids]
        correct += int(np.argmax(cosines) == label)
    assert nearest_centroid_accuracy(x, y, xt, yt, normalize=True) == pytest.approx(correct / len(yt), abs=0)


def test_given_centroids_and_absent_class():
    x, y = _data(seed=6)
    centroids = np.vstack([class_means(x, y, 4), np.full((1, 5), np.nan)])
    predictions = nearest_centroid_predict(x, centroids)
    assert predictions.max() < 4  # the NaN centroid is never chosen
    learned = torch.from_numpy(class_means(x, y, 4)).float()
    assert nearest_centroid_accuracy(x, y, x, y, centroids=learned) == pytest.approx(
        nearest_centroid_accuracy(x, y, x, y), abs=1e-12)


def test_chunking_does_not_change_predictions(monkeypatch):
    x, y = _data(n=300, seed=7)
    full = nearest_centroid_predict(x, class_means(x, y, 4), normalize=True)
    monkeypatch.setattr(classification, "_DISTANCE_BLOCK", 9)  # 2 rows per chunk
    np.testing.assert_array_equal(nearest_centroid_predict(x, class_means(x, y, 4), normalize=True), full)


def test_zero_vectors_do_not_produce_nan():
    x, y = _data(seed=8)
    x[:3] = 0
    assert 0 <= nearest_centroid_accuracy(x, y, x, y, normalize=True) <= 1


@pytest.mark.parametrize(
    "call",
    [
        lambda x, y: accuracy(x[:, :3], y),  # label 3 out of range for 3 scores
        lambda x, y: accuracy(x, y[:-1]),
        lambda x, y: accuracy(x[0], y),
        lambda x, y: nearest_centroid_accuracy(x, y, x[:, :2], y),
        lambda x, y: nearest_centroid_accuracy(x, y, x, y, centroids=np.zeros((4, 2))),
        lambda x, y: nearest_centroid_accuracy(x, y, x, y, centroids=np.zeros((2, 5))),  # labels ≥ 2
        lambda x, y: class_means(np.where(np.arange(5) == 0, np.nan, x), y, 4),
        lambda x, y: class_means(x, -y - 1, 4),
        lambda x, y: class_means(x, y + 0.5, 4),
    ],
)
def test_bad_inputs_raise_value_error(call):
    x, y = _data()
    with pytest.raises(ValueError):
        call(x, y)
