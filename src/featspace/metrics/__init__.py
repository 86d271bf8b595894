"""Feature-space metrics: functions on embeddings that return plain floats or dataclasses.

Each accepts torch tensors or numpy arrays, computes in float64 (numpy, or ``featspace.functional`` on float64
tensors where heads share the formula) and is tested against an independent reference (scikit-learn, SciPy or
a literal float64 transcription) in ``tests/metrics``.

- ``accuracy``, ``class_means``, ``nearest_centroid_accuracy``        (001 Tables 1–2)
- ``cluster_validity``                                                (000 Table 2)
- ``angular_separation`` → ``AngularSeparation`` (D_EM, D_KL)          (004 Figs. 4–8, Tables II–III)
- ``discriminant_score``                                              (003 Table 1)
- ``norm_split_accuracy``, ``normalized_dimension_variance``          (002 Tables 1 and 5)
- few-shot episodes on frozen features (``fewshot``): ``sample_episodes``, ``evaluate_episodes`` →
  ``FewShotResult``, ``ncc_predict``, ``laplacianshot_predict``, ``confidence_interval``   (003 Tables 4–5);
  unlike the others these work on torch tensors, on any device
- ``retrieval_metrics``: precision@1, R-precision, MAP@R, recall@k (Musgrave et al., 2020), Euclidean and cosine
- ``evaluate``: all of them as one flat dict.
"""

from featspace.metrics.angular import AngularSeparation, angular_separation
from featspace.metrics.classification import (
    accuracy,
    class_means,
    nearest_centroid_accuracy,
    nearest_centroid_predict,
)
from featspace.metrics.clustering import cluster_validity
from featspace.metrics.discriminant import classifier_subspace_basis, discriminant_score
from featspace.metrics.evaluation import HEAD_SPACE_PREFIX, evaluate
from featspace.metrics.fewshot import (
    METHODS,
    NORMS,
    EpisodeIndices,
    FewShotResult,
    confidence_interval,
    evaluate_episodes,
    laplacianshot_assignments,
    laplacianshot_predict,
    ncc_predict,
    normalize_features,
    rectify_prototypes,
    sample_episodes,
)
from featspace.metrics.norms import norm_split_accuracy, normalized_dimension_variance
from featspace.metrics.retrieval import RECALL_KS, retrieval_metrics

__all__ = [
    "RECALL_KS",
    "AngularSeparation",
    "EpisodeIndices",
    "FewShotResult",
    "HEAD_SPACE_PREFIX",
    "METHODS",
    "NORMS",
    "accuracy",
    "angular_separation",
    "class_means",
    "classifier_subspace_basis",
    "cluster_validity",
    "confidence_interval",
    "discriminant_score",
    "evaluate",
    "evaluate_episodes",
    "laplacianshot_assignments",
    "laplacianshot_predict",
    "ncc_predict",
    "nearest_centroid_accuracy",
    "nearest_centroid_predict",
    "norm_split_accuracy",
    "normalize_features",
    "normalized_dimension_variance",
    "rectify_prototypes",
    "retrieval_metrics",
    "sample_episodes",
]
