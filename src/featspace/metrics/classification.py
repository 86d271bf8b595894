"""Accuracy by scores and by nearest centroid.

- ``accuracy``: the fraction of samples whose top score is their label (001 Table 2, every paper's accuracy).
- ``class_means``: the class means of embeddings, the default centroids of nearest-centroid evaluation.
- ``nearest_centroid_accuracy``: predict the class of the nearest centroid (001 Table 1, "minimum distance to
  the centroid (class mean)"), in the raw space (Euclidean) or the L2-normalized one (cosine).
"""

from __future__ import annotations

import numpy as np
import torch

from featspace import functional
from featspace.metrics._inputs import (
    ArrayLike,
    as_tensor,
    check_num_classes,
    embeddings_array,
    labels_array,
    to_numpy,
    unit_rows,
)

__all__ = ["accuracy", "class_means", "nearest_centroid_accuracy", "nearest_centroid_predict"]

#: entries of the [chunk, C] distance block computed at once: 4M float64 = 32 MiB
_DISTANCE_BLOCK = 4_000_000


def accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of rows of ``scores`` [N, C] whose argmax equals ``labels`` [N] (ties: the lowest index)."""
    score_array = embeddings_array(scores, "scores")
    label_array = labels_array(labels, score_array.shape[0])
    check_num_classes(label_array, score_array.shape[1])
    return float(np.mean(score_array.argmax(axis=1) == label_array))


def class_means(embeddings: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Class means [C, d] (float64) of ``embeddings`` [N, d] grouped by ``labels`` [N].

    A class without samples gets a row of NaN, which ``nearest_centroid_accuracy`` never predicts. The sums are
    ``featspace.functional.class_means``, in float64.
    """
    x = embeddings_array(embeddings)
    y = labels_array(labels, x.shape[0])
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    check_num_classes(y, int(num_classes))
    means, counts = functional.class_means(as_tensor(x), as_tensor(y), int(num_classes))
    return means.masked_fill((counts == 0)[:, None], float("nan")).numpy()


def nearest_centroid_predict(embeddings: ArrayLike, centroids: ArrayLike, *, normalize: bool = False) -> np.ndarray:
    """Index [N] of the nearest row of ``centroids`` [C, d] for each row of ``embeddings`` [N, d].

    Euclidean distance, or with ``normalize=True`` the cosine (embeddings and centroids L2-normalized, so the
    nearest centroid is the one of largest cosine). Rows of ``centroids`` that are NaN (absent classes) are
    never chosen. The rule is ``featspace.functional.nearest_centroid`` (argmin of ‖c‖² − 2 xᵀc, in float64),
    applied in row chunks of at most ``_DISTANCE_BLOCK`` entries, so N×C never has to fit in memory at once.
    """
    x = embeddings_array(embeddings)
    c = to_numpy(centroids).astype(np.float64)
    if c.ndim != 2 or c.shape[1] != x.shape[1]:
        raise ValueError(f"centroids must have shape [C, {x.shape[1]}], got shape {tuple(c.shape)}")
    absent = ~np.isfinite(c).all(axis=1)
    if absent.all():
        raise ValueError("centroids has no finite row")
    if normalize:
        x = unit_rows(x)
        # absent rows stay NaN, so that nearest_centroid still never chooses them
        c = np.where(absent[:, None], np.nan, unit_rows(np.where(absent[:, None], 0.0, c)))
    rows, centroid_tensor = as_tensor(x), as_tensor(c)
    chunk = max(1, _DISTANCE_BLOCK // c.shape[0])
    return torch.cat([functional.nearest_centroid(rows[start:start + chunk], centroid_tensor)
                      for start in range(0, x.shape[0], chunk)]).numpy()


def nearest_centroid_accuracy(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
    *,
    centroids: ArrayLike | None = None,
    normalize: bool = False,
) -> float:
    """Accuracy of nearest-centroid classification of the test embeddings (001 Table 1).

    train_embeddings [N, d], train_labels [N]: give the default centroids, the class means of the training
        embeddings (of the L2-normalized training embeddings when ``normalize=True``, the mean direction of
        each class on the sphere). The number of classes is ``max(train_labels, test_labels) + 1``.
    test_embeddings [M, d], test_labels [M]: what is classified.
    centroids [C, d]: use these instead (e.g. a head's learned centroids or PEDCC points); the training
        embeddings are then only validated.
    normalize: L2-normalize the embeddings and the centroids, i.e. cosine nearest centroid.

    Departure from 001: the paper's centroids are the ones its Hadamard layer learned; featspace's default
    is the exact class mean, and a head's learned centroids are passed as ``centroids``.
    """
    train = embeddings_array(train_embeddings, "train_embeddings")
    train_y = labels_array(train_labels, train.shape[0], "train_labels")
    test = embeddings_array(test_embeddings, "test_embeddings")
    test_y = labels_array(test_labels, test.shape[0], "test_labels")
    if test.shape[1] != train.shape[1]:
        raise ValueError(f"test_embeddings have width {test.shape[1]}, train_embeddings {train.shape[1]}")
    if centroids is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
        centroids = class_means(unit_rows(train) if normalize else train, train_y, num_classes)
    predictions = nearest_centroid_predict(test, centroids, normalize=normalize)
    check_num_classes(test_y, to_numpy(centroids).shape[0], "test_labels")
    return float(np.mean(predictions == test_y))
