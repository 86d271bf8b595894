"""Few-shot learning (direct-sum paper, 003_3b01b74d9ee629e7.txt, Sec. 3): class-disjoint splits, N-way K-shot
training batches, and fast, vectorized N-way K-shot evaluation on frozen features with a 95% CI.

- ``splits``: ``load_split(name)`` → :class:`FewShotSplit` (mini_imagenet, tiered_imagenet, cub, cifar_fs, and
  the CPU-sized fashion and digits); ``FewShotSplit.to_bundle()`` for the ordinary training path.
- ``sampler``: :class:`EpisodicBatchSampler`, :class:`EpisodicSampler`, :func:`episodic_loader` (DDP-aware).
- ``episodes``: :func:`sample_episodes`, :func:`evaluate_episodes`, nearest centroid, LaplacianShot, CIs.
- ``evaluate``: :func:`evaluate_run` (``featspace fewshot RUN_DIR``); ``cli.add_fewshot_command``.

``evaluate`` and ``cli`` import the training stack (Lightning) and are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from featspace.fewshot.episodes import (
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
from featspace.fewshot.sampler import EpisodicBatchSampler, EpisodicSampler, episodic_loader
from featspace.fewshot.splits import (
    DATASET_PREFIX,
    ClassSet,
    FewShotSplit,
    SplitTooLargeError,
    load_bundle,
    load_split,
    split_for_dataset,
)
from featspace.fewshot.splits import describe as describe_split
from featspace.fewshot.splits import names as split_names

__all__ = [
    "DATASET_PREFIX",
    "METHODS",
    "NORMS",
    "ClassSet",
    "EpisodeIndices",
    "EpisodicBatchSampler",
    "EpisodicSampler",
    "FewShotResult",
    "FewShotSplit",
    "SplitTooLargeError",
    "add_fewshot_command",
    "confidence_interval",
    "describe_split",
    "episodic_loader",
    "evaluate_episodes",
    "evaluate_features",
    "evaluate_run",
    "extract_features",
    "laplacianshot_assignments",
    "laplacianshot_predict",
    "load_bundle",
    "load_split",
    "ncc_predict",
    "normalize_features",
    "rectify_prototypes",
    "sample_episodes",
    "split_for_dataset",
    "split_names",
]

_LAZY = {"evaluate_run": "evaluate", "evaluate_features": "evaluate", "extract_features": "evaluate",
         "add_fewshot_command": "cli"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"featspace.fewshot.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'featspace.fewshot' has no attribute {name!r}")
