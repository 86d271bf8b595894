"""Evaluation of a trained backbone + head: embeddings of the splits, every feature-space metric, and the files
the figures are drawn from.

Runs after training (in the training process, rank 0) and on demand with ``featspace eval RUN_DIR``. It writes,
through ``featspace.rundir``: ``embeddings.npz`` (test embeddings, labels, scores, the head's feature space,
training class means, learned centroids, class names; the embeddings and labels of at most ``eval_max_samples``
training images; for image folders the file of every row), ``pair_angles.json`` (the pair-angle histograms that
D_EM and D_KL come from, computed once, here), ``centroid_history.npz`` and ``metrics.json``. It draws nothing:
``featspace.report.run_figures`` draws a run's figures from those files.

Every split is read through the data module's loaders, so a streamed image folder is embedded as it is trained:
decoded batch by batch in the loader's workers, never held whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from featspace.data import normalize
from featspace.functional import class_means
from featspace.heads.base import Head
from featspace.metrics import AngularSeparation, evaluate
from featspace.rundir import RunDir, RunIndex
from featspace.timing import Stopwatch
from featspace.train.module import FeatureModule
from featspace.train.parts import load_trained

__all__ = ["Embeddings", "evaluate_and_save", "evaluate_model", "evaluate_run", "extract", "image_batches",
           "TRAINING_KEYS"]

#: the facts of the fit in metrics.json, which a re-evaluation keeps (it cannot recompute them)
TRAINING_KEYS = ("epochs", "steps", "train_seconds", "final_train_acc", "best_val_loss")


@dataclass
class Embeddings:
    """Embeddings of one split: ``embeddings`` [N, d], ``labels`` [N], and with a head ``scores`` [N, C] (its
    prediction scores) and ``feature_space`` [N, d'] (its comparison space, e.g. LACE-whitened)."""

    embeddings: Tensor
    labels: Tensor
    scores: Tensor | None = None
    feature_space: Tensor | None = None

    @property
    def own_space(self) -> bool:
        """Whether the head's feature space differs from the raw embeddings (LACE, normalised heads)."""
        return self.feature_space is not None and not torch.equal(self.feature_space, self.embeddings)


@torch.no_grad()
def extract(backbone: nn.Module, head: Head | None, batches: Iterable[tuple[Tensor, Tensor]],
            device: torch.device | str = "cpu") -> Embeddings:
    """Run (images, labels) batches through the backbone (and the head, when given) in eval mode; results on
    the CPU in float32; the modules' modes are restored afterwards. The one feature extractor of featspace:
    evaluation after training, ``featspace eval`` and few-shot evaluation all use it."""
    modules = [m for m in (backbone, head) if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    out: dict[str, list[Tensor]] = {"embeddings": [], "labels": [], "scores": [], "feature_space": []}
    try:
        for images, labels in batches:
            embeddings = backbone(images.to(device)).float()
            out["embeddings"].append(embeddings.cpu())
            out["labels"].append(labels.cpu())
            if head is not None:
                out["scores"].append(head.predict(embeddings).float().cpu())
                out["feature_space"].append(head.feature_space(embeddings).float().cpu())
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    if not out["embeddings"]:
        raise ValueError("no images to extract embeddings from")
    return Embeddings(**{k: torch.cat(v) if v else None for k, v in out.items()})


def image_batches(images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float], *,
                  batch_size: int = 256) -> Iterable[tuple[Tensor, Tensor]]:
    """uint8 images [N, C, H, W] and their labels as normalised float batches, as the training loader gives them
    (``featspace.data.normalize``), for :func:`extract`."""
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        yield normalize(images[start:stop], mean, std), labels[start:stop]


def evaluate_model(head: Head, train: Embeddings, test: Embeddings, *, seed: int = 0,
                   details: dict[str, Any] | None = None) -> dict[str, float]:
    """Every feature-space metric of ``featspace.metrics.evaluate`` for one trained model; ``details`` receives
    the pair-angle statistics behind D_EM and D_KL."""
    centroids = head.learned_centroids()
    weight = getattr(head, "weight", None)
    metrics = evaluate(
        train.embeddings, train.labels, test.embeddings, test.labels, test.scores,
        learned_centroids=None if centroids is None else centroids.detach().float().cpu(),
        classifier_weight=weight.detach().float().cpu() if isinstance(weight, Tensor) and weight.dim() == 2 else None,
        feature_space=test.feature_space if test.own_space else None,
        seed=seed, details=details,
    )
    return {k: float(v) for k, v in metrics.items()}


def pair_angle_histograms(separation: AngularSeparation) -> dict[str, Any]:
    """What the pair-angle figure needs of an :class:`AngularSeparation` (its histograms and summary numbers,
    not the millions of angles), as JSON."""
    return {
        "histogram_edges": np.asarray(separation.histogram_edges).tolist(),
        "positive_hist": np.asarray(separation.positive_hist).tolist(),
        "negative_hist": np.asarray(separation.negative_hist).tolist(),
        "positive_mean": separation.positive_mean, "negative_mean": separation.negative_mean,
        "n_positive_pairs": separation.n_positive_pairs, "n_negative_pairs": separation.n_negative_pairs,
        "d_em": separation.d_em, "d_kl": separation.d_kl, "sampled": separation.sampled,
        "kl_smoothing": separation.kl_smoothing,
    }


def _train_sample(count: int, limit: int, seed: int) -> Tensor:
    """Sorted rows of a seeded random subset of at most ``limit`` of ``count`` training samples."""
    if count <= limit:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(count, generator=generator)[:limit].sort().values


def _embedding_arrays(head: Head, train: Embeddings, test: Embeddings, class_names: Sequence[str], *,
                      train_limit: int, seed: int = 0, test_paths: Sequence[str] | None = None,
                      train_paths: Sequence[str] | None = None) -> dict[str, Any]:
    assert test.scores is not None
    means, _ = class_means(train.embeddings, train.labels, test.scores.shape[1])
    kept = _train_sample(train.labels.numel(), train_limit, seed)
    arrays: dict[str, Any] = {
        "test_embeddings": test.embeddings.numpy(),
        "test_labels": test.labels.numpy(),
        "test_scores": test.scores.numpy(),
        "train_class_means": means.numpy(),
        "class_names": np.array([str(n) for n in class_names]),
        # a seeded subset of the training split (issue 14: train-vs-test comparisons), rows in split order
        "train_embeddings": train.embeddings[kept].numpy(),
        "train_labels": train.labels[kept].numpy(),
    }
    if test_paths is not None:
        arrays["test_paths"] = np.array([str(p) for p in test_paths])
    if train_paths is not None:
        arrays["train_paths"] = np.array([str(train_paths[i]) for i in kept.tolist()])
    if test.own_space:
        arrays["test_feature_space"] = test.feature_space.numpy()
    centroids = head.learned_centroids()
    if centroids is not None:
        arrays["learned_centroids"] = centroids.detach().float().cpu().numpy()
    return arrays


def evaluate_and_save(module: FeatureModule, datamodule: Any, config: Any, rundir: RunDir,
                      training: dict[str, float], *, timings: dict[str, float] | None = None) -> dict[str, float]:
    """Embed the train and test splits, compute every metric, write the run's evaluation files (module
    docstring); returns the metrics (``training`` facts included). ``timings``, when given, receives the seconds
    of each stage ("embed train split", "embed test split", "metrics", "write files";
    ``benchmarks/post_training.py`` reads them)."""
    clock = Stopwatch(timings)
    device = next(module.parameters()).device
    train_split = extract(module.backbone, module.head, datamodule.train_eval_dataloader(), device)
    clock.lap("embed train split")
    test_split = extract(module.backbone, module.head, datamodule.test_dataloader(), device)
    clock.lap("embed test split")
    details: dict[str, Any] = {}
    metrics = evaluate_model(module.head, train_split, test_split, seed=config.seed, details=details)
    clock.lap("metrics")
    metrics.update(training)
    paths = getattr(datamodule, "split_paths", None)
    arrays = _embedding_arrays(module.head, train_split, test_split, datamodule.class_names,
                               train_limit=int(config.eval_max_samples), seed=config.seed,
                               test_paths=paths("test") if paths else None,
                               train_paths=paths("train_eval") if paths else None)
    rundir.write_embeddings(arrays)
    rundir.write_pair_angles(pair_angle_histograms(details["angular_separation"]))
    if module.centroid_history:
        rundir.write_centroid_history(torch.stack(module.centroid_history).numpy(), module.centroid_source)
    rundir.write_model(datamodule.model_info())
    rundir.write_metrics(metrics)
    clock.lap("write files")
    return metrics


def evaluate_run(run_dir: str | Path) -> dict[str, float]:
    """Re-evaluate a finished run from its config and checkpoint (``featspace eval RUN_DIR``); returns the
    metrics. The facts of the fit and the few-shot numbers in metrics.json are kept, as this cannot recompute
    them. A run its index records as running, interrupted or failed is refused (ValueError)."""
    rundir = RunDir(run_dir)
    record = RunIndex(rundir.path.parent).get(rundir.name) if RunIndex.exists(rundir.path.parent) else None
    if record is not None and record.status != "finished":
        # its checkpoint holds the weights of an unfinished fit: metrics from them would look like the run's
        raise ValueError(f"run {rundir.name} is {record.status}, not finished: resume it with "
                         f"`featspace train --resume {rundir.path}` before evaluating it")
    module, datamodule, _ = load_trained(rundir.path)
    previous = {k: v for k, v in (rundir.read_metrics() or {}).items()
                if k in TRAINING_KEYS or k.startswith("fewshot_")}
    metrics = evaluate_and_save(module, datamodule, module.config, rundir, previous)
    if record is not None:
        RunIndex(rundir.path.parent).update_metrics(rundir.name, metrics)
    return metrics
