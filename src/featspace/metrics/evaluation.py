"""Every feature-space metric of a trained model as one flat dict (what ``featspace eval`` writes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from featspace.metrics._inputs import ArrayLike, embeddings_array, labels_array, to_numpy
from featspace.metrics.angular import angular_separation
from featspace.metrics.classification import accuracy, nearest_centroid_accuracy
from featspace.metrics.clustering import cluster_validity
from featspace.metrics.discriminant import discriminant_score
from featspace.metrics.norms import norm_split_accuracy, normalized_dimension_variance
from featspace.metrics.retrieval import retrieval_metrics

__all__ = ["evaluate", "HEAD_SPACE_PREFIX"]

#: prefix of the metrics computed on the head's own feature space (e.g. LACE's whitened embeddings)
HEAD_SPACE_PREFIX = "head_space_"


def _space_metrics(embeddings: np.ndarray, labels: np.ndarray, seed: int, max_pairs: int,
                   max_silhouette_samples: int, details: dict[str, Any] | None = None,
                   prefix: str = "") -> dict[str, float]:
    result = dict(cluster_validity(embeddings, labels, seed=seed, max_samples=max_silhouette_samples))
    separation = angular_separation(embeddings, labels, max_pairs=max_pairs, seed=seed)
    if details is not None:
        details[f"{prefix}angular_separation"] = separation
    result.update(
        d_em=separation.d_em,
        d_kl=separation.d_kl,
        positive_angle_mean=separation.positive_mean,
        negative_angle_mean=separation.negative_mean,
    )
    return result


def _transform(feature_space: Callable[[Any], Any] | ArrayLike, test: np.ndarray) -> np.ndarray:
    if callable(feature_space):
        import torch

        with torch.no_grad():
            transformed = feature_space(torch.as_tensor(test, dtype=torch.float32))
    else:
        transformed = feature_space
    transformed = embeddings_array(to_numpy(transformed), "feature_space embeddings")
    if transformed.shape[0] != test.shape[0]:
        raise ValueError(f"feature_space gives {transformed.shape[0]} rows for {test.shape[0]} test embeddings")
    return transformed


def evaluate(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
    test_scores: ArrayLike | None = None,
    *,
    learned_centroids: ArrayLike | None = None,
    classifier_weight: ArrayLike | None = None,
    feature_space: Callable[[Any], Any] | ArrayLike | None = None,
    seed: int = 0,
    max_pairs: int = 2_000_000,
    max_silhouette_samples: int = 10_000,
    details: dict[str, Any] | None = None,
) -> dict[str, float]:
    """All metrics of ``featspace.metrics`` on the test embeddings, as ``{name: float}``.

    train_embeddings [N, d], train_labels [N]: give the class means for nearest-centroid accuracy.
    test_embeddings [M, d], test_labels [M]: what is measured. test_scores [M, C]: the head's ``predict``.
    learned_centroids [C, d]: a head's own centroids (ICV, center loss, PEDCC points), also used for
        nearest-centroid accuracy. classifier_weight [C, d]: a linear classifier's weights, for the split
        discriminant score. feature_space: the head's own embedding space where it has one (LACE's whitened
        space), as a callable taking a CPU float32 tensor [M, d] and returning [M, d'], or the transformed test
        embeddings [M, d'] themselves; cluster validity and angular separation are then also computed there.
    seed: every random choice (k-means, subsamples, pair samples). max_pairs, max_silhouette_samples: see
        ``angular_separation`` and ``cluster_validity``. details: a dict that receives the
        ``AngularSeparation`` behind the angular keys (``"angular_separation"``, and
        ``"head_space_angular_separation"`` with feature_space), so a caller that draws the pair-angle
        histograms does not compute them again.

    Keys (a key is absent when its input is not given):
      accuracy                                                    with test_scores
      ncc_accuracy, ncc_accuracy_cosine                           class means of the training embeddings
      ncc_learned_accuracy, ncc_learned_accuracy_cosine           with learned_centroids
      silhouette, davies_bouldin, calinski_harabasz, homogeneity, completeness
      d_em, d_kl, positive_angle_mean, negative_angle_mean        degrees (d_kl in nats)
      precision_at_1, r_precision, mean_average_precision_at_r, recall_at_{1,2,4,8}, and each with _cosine
                                                                  (``featspace.metrics.retrieval``)
      discriminant_total; discriminant_classifier, discriminant_complement with classifier_weight
      low_norm_accuracy, high_norm_accuracy, low_norm_count, high_norm_count, mean_norm   with test_scores
      normalized_dimension_variance
      head_space_<cluster and angular keys>                       with feature_space
    Undefined values are NaN (``featspace.io.write_json`` writes them as null). Cost: for 10 000 test
    embeddings of width 2 (60 000 training ones) about 3–4 s on two CPU cores, mostly the two retrieval spaces
    (``benchmarks/post_training.py`` measures it stage by stage); a feature_space doubles the cluster and
    angular part.
    """
    train = embeddings_array(train_embeddings, "train_embeddings")
    train_y = labels_array(train_labels, train.shape[0], "train_labels")
    test = embeddings_array(test_embeddings, "test_embeddings", min_rows=2)
    test_y = labels_array(test_labels, test.shape[0], "test_labels")
    result: dict[str, float] = {}

    if test_scores is not None:
        result["accuracy"] = accuracy(test_scores, test_y)
    result["ncc_accuracy"] = nearest_centroid_accuracy(train, train_y, test, test_y)
    result["ncc_accuracy_cosine"] = nearest_centroid_accuracy(train, train_y, test, test_y, normalize=True)
    if learned_centroids is not None:
        for suffix, normalize in (("", False), ("_cosine", True)):
            result[f"ncc_learned_accuracy{suffix}"] = nearest_centroid_accuracy(
                train, train_y, test, test_y, centroids=learned_centroids, normalize=normalize)

    result.update(_space_metrics(test, test_y, seed, max_pairs, max_silhouette_samples, details))
    for metric in ("euclidean", "cosine"):  # each test embedding against the rest of the test set
        result.update(retrieval_metrics(test, test_y, metric=metric))

    discriminant = discriminant_score(test, test_y, weight=classifier_weight)
    result.update({f"discriminant_{key}": value for key, value in discriminant.items()})
    if test_scores is not None:
        result.update({key: float(value) for key, value in norm_split_accuracy(test, test_scores, test_y).items()})
    result["normalized_dimension_variance"] = normalized_dimension_variance(test)

    if feature_space is not None:
        transformed = _transform(feature_space, test)
        space = _space_metrics(transformed, test_y, seed, max_pairs, max_silhouette_samples, details,
                               HEAD_SPACE_PREFIX)
        result.update({HEAD_SPACE_PREFIX + key: value for key, value in space.items()})
    return result
