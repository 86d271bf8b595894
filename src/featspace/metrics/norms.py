"""Feature-norm analyses of POD (002_ec5345d43eb6f956.txt): Table 1 and Table 5.

Table 1 splits the test samples at the mean L2 norm of their latent features and reports the accuracy of
each half: low-norm samples are classified markedly worse, which motivates the norm-adaptive term δ.

Table 5 reports one number per loss, "the variance of the 2048 dimensions feature eigen-vectors
(normalized)", of the order of 1e-8, and reads a smaller value as SC loss "balancing the energy of the
features". featspace reads it as follows (the text gives no formula and no public code computes it):
L2-normalize every feature vector, take the variance of each of the d dimensions over the samples (the
energy each dimension carries), and report the variance of those d numbers across the dimensions. This is
the reading that matches both the magnitude (per-dimension variances of unit vectors in 2048-d are about
1/2048 ≈ 5e-4, and their spread across dimensions ~1e-4, whose square is ~1e-8) and the "energy balance"
interpretation; "eigen-vectors" translates 特征向量, which means both eigenvector and feature vector.
"""

from __future__ import annotations

import numpy as np

from featspace.metrics._inputs import ArrayLike, check_num_classes, embeddings_array, labels_array, unit_rows

__all__ = ["norm_split_accuracy", "normalized_dimension_variance"]


def norm_split_accuracy(embeddings: ArrayLike, scores: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Accuracy below and above the mean feature norm (POD Table 1).

    embeddings [N, d]: the latent features whose L2 norms are compared with their mean over the N samples.
    scores [N, C]: the classifier's scores (argmax = prediction). labels [N].
    Returns ``low_norm_accuracy`` and ``low_norm_count`` (norm strictly below the mean),
    ``high_norm_accuracy`` and ``high_norm_count`` (at or above it), and ``mean_norm``. The accuracy of an
    empty half is NaN.
    """
    x = embeddings_array(embeddings)
    s = embeddings_array(scores, "scores")
    if s.shape[0] != x.shape[0]:
        raise ValueError(f"scores have {s.shape[0]} rows, embeddings {x.shape[0]}")
    y = labels_array(labels, x.shape[0])
    check_num_classes(y, s.shape[1])
    norms = np.linalg.norm(x, axis=1)
    mean_norm = float(norms.mean())
    correct = s.argmax(axis=1) == y
    low = norms < mean_norm
    return {
        "low_norm_accuracy": float(correct[low].mean()) if low.any() else float("nan"),
        "high_norm_accuracy": float(correct[~low].mean()) if (~low).any() else float("nan"),
        "low_norm_count": int(low.sum()),
        "high_norm_count": int((~low).sum()),
        "mean_norm": mean_norm,
    }


def normalized_dimension_variance(embeddings: ArrayLike) -> float:
    """POD Table 5 (reading in the module docstring): Var_k( Var_i( x_ik / ‖x_i‖ ) ) over the d dimensions k.

    embeddings [N, d]. Both variances are population variances (divide by N and by d). Zero vectors stay
    zero after normalization. Smaller means the energy of the normalized features is spread more evenly
    over the dimensions.
    """
    unit = unit_rows(embeddings_array(embeddings))
    return float(np.var(np.var(unit, axis=0)))
