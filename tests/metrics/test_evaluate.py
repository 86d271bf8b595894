"""evaluate: the flat dict holds exactly the applicable keys, each equal to its metric function's value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featspace import metrics


def _data(seed=0, n=120, d=8, c=4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 2
    y = np.arange(n) % c
    return centres[y] + rng.normal(size=(n, d)), y, centres


BASE_KEYS = {
    "ncc_accuracy", "ncc_accuracy_cosine", "silhouette", "davies_bouldin", "calinski_harabasz", "homogeneity",
    "completeness", "d_em", "d_kl", "positive_angle_mean", "negative_angle_mean", "discriminant_total",
    "normalized_dimension_variance",
} | {f"{key}{suffix}" for key in ("precision_at_1", "r_precision", "mean_average_precision_at_r", "recall_at_1",
                                  "recall_at_2", "recall_at_4", "recall_at_8") for suffix in ("", "_cosine")}
SCORE_KEYS = {"accuracy", "low_norm_accuracy", "high_norm_accuracy", "low_norm_count", "high_norm_count", "mean_norm"}


def test_minimal_call_has_the_base_keys():
    train, train_y, _ = _data(0)
    test, test_y, _ = _data(1)
    result = metrics.evaluate(train, train_y, test, test_y)
    assert set(result) == BASE_KEYS
    assert all(isinstance(v, float) for v in result.values())


def test_full_call_matches_the_individual_functions():
    train, train_y, centres = _data(0)
    test, test_y, _ = _data(1)
    scores = test @ centres.T
    whitening = np.random.default_rng(5).normal(size=(8, 8))
    result = metrics.evaluate(
        torch.from_numpy(train), torch.from_numpy(train_y), test, test_y, torch.from_numpy(scores),
        learned_centroids=centres, classifier_weight=centres, feature_space=lambda x: x @ torch.from_numpy(whitening).float().T,
        seed=3,
    )
    space_keys = {"silhouette", "davies_bouldin", "calinski_harabasz", "homogeneity", "completeness", "d_em", "d_kl",
                  "positive_angle_mean", "negative_angle_mean"}
    assert set(result) == (BASE_KEYS | SCORE_KEYS | {"ncc_learned_accuracy", "ncc_learned_accuracy_cosine",
                                                     "discriminant_classifier", "discriminant_complement"}
                           | {"head_space_" + k for k in space_keys})
    assert result["accuracy"] == metrics.accuracy(scores, test_y)
    assert result["ncc_accuracy_cosine"] == metrics.nearest_centroid_accuracy(train, train_y, test, test_y, normalize=True)
    assert result["ncc_learned_accuracy"] == metrics.nearest_centroid_accuracy(train, train_y, test, test_y, centroids=centres)
    cluster = metrics.cluster_validity(test, test_y, seed=3)
    assert all(result[k] == pytest.approx(v, nan_ok=True) for k, v in cluster.items())
    separation = metrics.angular_separation(test, test_y, seed=3)
    assert result["d_em"] == pytest.approx(separation.d_em) and result["d_kl"] == pytest.approx(separation.d_kl)
    discriminant = metrics.discriminant_score(test, test_y, weight=centres)
    assert result["discriminant_complement"] == pytest.approx(discriminant["complement"])
    assert result["low_norm_count"] + result["high_norm_count"] == len(test)
    whitened = test @ whitening.T
    assert result["head_space_calinski_harabasz"] == pytest.approx(
        metrics.cluster_validity(whitened, test_y, seed=3)["calinski_harabasz"], rel=1e-4)  # float32 transform
    # the transformed embeddings may also be passed directly
    direct = metrics.evaluate(train, train_y, test, test_y, feature_space=whitened, seed=3)
    assert direct["head_space_d_em"] == pytest.approx(result["head_space_d_em"], rel=1e-4)


def test_undefined_metrics_are_nan_and_bad_feature_space_raises():
    train, train_y, _ = _data(0)
    test, _, _ = _data(1, n=6)
    result = metrics.evaluate(train, train_y, test, np.arange(6) % 4 * 0)  # a single test class
    assert math.isnan(result["silhouette"]) and math.isnan(result["d_em"])
    with pytest.raises(ValueError):
        metrics.evaluate(train, train_y, test, np.zeros(6, dtype=np.int64), feature_space=np.zeros((5, 2)))
