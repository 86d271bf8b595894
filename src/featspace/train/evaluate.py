"""Evaluation of a trained backbone + head: embeddings, every feature-space metric, and the plots.

Runs after training (in the training process, rank 0) and on demand with ``featspace eval RUN_DIR``.
The test embeddings, labels, scores and the head's feature space are saved as ``embeddings.npz``; the
metrics as ``metrics.json``; the figures under ``plots/``. Every file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from featspace.heads.base import Head
from featspace.io import atomic_path

__all__ = ["Embeddings", "extract", "evaluate_model", "save_embeddings", "make_plots"]


@dataclass
class Embeddings:
    """Embeddings of one split: ``embeddings`` [N, d], ``labels`` [N], ``scores`` [N, C] (the head's
    prediction scores) and ``feature_space`` [N, d'] (the head's comparison space, e.g. LACE-whitened)."""

    embeddings: Tensor
    labels: Tensor
    scores: Tensor
    feature_space: Tensor


@torch.no_grad()
def extract(backbone: nn.Module, head: Head, loader: DataLoader, device: torch.device | str = "cpu") -> Embeddings:
    """Run a loader through backbone and head in eval mode; results on the CPU in float32."""
    backbone_mode, head_mode = backbone.training, head.training
    backbone.eval()
    head.eval()
    out: dict[str, list[Tensor]] = {"embeddings": [], "labels": [], "scores": [], "feature_space": []}
    try:
        for images, labels in loader:
            embeddings = backbone(images.to(device)).float()
            out["embeddings"].append(embeddings.cpu())
            out["labels"].append(labels.cpu())
            out["scores"].append(head.predict(embeddings).float().cpu())
            out["feature_space"].append(head.feature_space(embeddings).float().cpu())
    finally:
        backbone.train(backbone_mode)
        head.train(head_mode)
    return Embeddings(**{k: torch.cat(v) for k, v in out.items()})


def evaluate_model(head: Head, train: Embeddings, test: Embeddings, *, seed: int = 0,
                   max_samples: int = 10000) -> dict[str, float]:
    """Every feature-space metric of ``featspace.metrics.evaluate`` for one trained model."""
    from featspace.metrics import evaluate

    centroids = head.learned_centroids()
    weight = getattr(head, "weight", None)
    same_space = not torch.equal(test.feature_space, test.embeddings)
    metrics = evaluate(
        train.embeddings, train.labels, test.embeddings, test.labels, test.scores,
        learned_centroids=None if centroids is None else centroids.detach().float().cpu(),
        classifier_weight=weight.detach().float().cpu() if isinstance(weight, Tensor) and weight.dim() == 2 else None,
        feature_space=test.feature_space if same_space else None,
        seed=seed,
    )
    return {k: float(v) for k, v in metrics.items()}


def save_embeddings(path: Path, head: Head, train: Embeddings, test: Embeddings) -> None:
    """embeddings.npz: the test split (embeddings, labels, scores, feature space), the training class
    means, and the head's learned centroids when it has them."""
    num_classes = test.scores.shape[1]
    means = torch.zeros(num_classes, train.embeddings.shape[1])
    means.index_add_(0, train.labels.long(), train.embeddings)
    counts = torch.bincount(train.labels.long(), minlength=num_classes).clamp_min(1)
    arrays: dict[str, Any] = {
        "test_embeddings": test.embeddings.numpy(),
        "test_labels": test.labels.numpy(),
        "test_scores": test.scores.numpy(),
        "train_class_means": (means / counts[:, None]).numpy(),
    }
    if not torch.equal(test.feature_space, test.embeddings):
        arrays["test_feature_space"] = test.feature_space.numpy()
    centroids = head.learned_centroids()
    if centroids is not None:
        arrays["learned_centroids"] = centroids.detach().float().cpu().numpy()
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def make_plots(plot_dir: Path, *, head: Head, test: Embeddings, history_csv: Path | None,
               centroid_history: Tensor | None, class_names: list[str] | None, tsne: bool = True,
               seed: int = 0, title: str = "", centroid_source: str = "learned") -> list[Path]:
    """Every figure of a run; returns the written paths. centroid_history [E, C, d]: per epoch, the head's
    centroids (``centroid_source="learned"``) or the class means of the epoch's training embeddings in the
    head's feature space (``"class_means"``)."""
    from featspace.metrics import angular_separation
    from featspace.report import plots

    plot_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    centroids = head.learned_centroids()
    centroids = None if centroids is None else centroids.detach().float().cpu()
    # the centroids live in the head's feature space (Head.learned_centroids): they are drawn there, and on the
    # raw embeddings only where the two spaces are the same (a normalised ICV head's centroids sit near the
    # unit circle, which is not where its raw embeddings are)
    own_space = not torch.equal(test.feature_space, test.embeddings)
    written.append(plots.plot_embeddings_2d(test.embeddings, test.labels, plot_dir / "embeddings.png",
                                            centroids=None if own_space else centroids, class_names=class_names,
                                            title=f"{title} test embeddings"))
    if own_space:
        written.append(plots.plot_embeddings_2d(test.feature_space, test.labels, plot_dir / "feature_space.png",
                                                centroids=centroids, class_names=class_names,
                                                title=f"{title} head feature space"))
    if centroid_history is not None and len(centroid_history) > 0:
        what = ("class means of each epoch's training embeddings" if centroid_source == "class_means"
                else "learned centroids after each epoch")
        written.append(plots.plot_centroid_history(centroid_history, plot_dir / "centroids_per_epoch.png",
                                                   class_names=class_names, title=f"{title}: {what}"))
    separation = angular_separation(test.embeddings, test.labels, seed=seed)
    written.append(plots.plot_angle_histograms(separation, plot_dir / "angles.png", title=f"{title} pair angles"))
    if history_csv is not None and history_csv.exists():
        written.append(plots.plot_training_curves(history_csv, plot_dir / "training_curves.png",
                                                         title=f"{title} training curves"))
    if tsne:
        written.append(plots.plot_tsne(test.embeddings, test.labels, plot_dir / "tsne.png", seed=seed,
                                       class_names=class_names, title=f"{title} test embeddings, 2-D t-SNE"))
    return [Path(p) for p in written]
