"""Few-shot evaluation of a trained run (``featspace fewshot RUN_DIR``): 003_3b01b74d9ee629e7.txt, Sec. 3.1.

The episode math is ``featspace.metrics.fewshot``'s and the splits are ``featspace.data``'s; this module joins
them to a trained run and writes the results into its directory.

    run directory ─► config + checkpoint ─► frozen backbone (the head is detached)
                 ─► features of the novel classes of the run's split (extracted once)
                 ─► 5-way {1, 5}-shot episodes: nearest centroid (Table 4) / LaplacianShot (Table 5)
                 ─► discriminant score of the classifier subspace and its complement on the novel features (Table 1)
                 ─► fewshot.json (atomic), and the flat numbers merged into metrics.json and the run index

The run's few-shot split is the one behind its dataset name (``fewshot_<split>``, see
``featspace.data.fewshot_splits``); ``split=`` overrides it, for a backbone trained elsewhere — then it is the
caller's job to make sure the training classes and the split's novel classes are disjoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from featspace.data import load_split, split_for_dataset
from featspace.metrics import discriminant_score
from featspace.metrics.fewshot import METHODS, NORMS, evaluate_episodes, sample_episodes
from featspace.rundir import RunDir, RunIndex
from featspace.suite import FEWSHOT_KEYS
from featspace.train.evaluate import extract, image_batches
from featspace.train.parts import load_trained

__all__ = ["evaluate_features", "evaluate_fewshot", "fewshot_settings", "flat_metrics", "needs_fewshot"]

log = logging.getLogger(__name__)



def evaluate_features(features: Tensor, labels: Tensor, *, base_mean: Tensor | None = None,
                      shots: Sequence[int] = (1, 5), ways: int = 5, queries: int = 15, episodes: int = 10000,
                      methods: Sequence[str] = ("ncc",), norm: str = "cl2n", seed: int = 0, lam: float = 1.0,
                      knn: int = 3, rectify: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Every (method, shots) pair on novel-class ``features`` [M, d] / ``labels`` [M]:
    ``{method: {str(shots): FewShotResult.as_dict()}}``. All methods see the same episodes for a given K
    (a paired comparison); the episodes of K come from ``seed`` + K."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown few-shot classifier(s) {unknown}; valid: {', '.join(METHODS)}")
    results: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in methods}
    for k in shots:
        indices = sample_episodes(labels, episodes=episodes, ways=ways, shots=int(k), queries=queries,
                                  seed=seed + int(k))
        for method in methods:
            result = evaluate_episodes(features, indices=indices, method=method, norm=norm, base_mean=base_mean,
                                       lam=lam, knn=knn, rectify=rectify)
            results[method][str(k)] = result.as_dict()
    return results


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of a ``fewshot.json`` report as flat metric keys: ``fewshot_<method>_<K>shot`` (mean
    accuracy, a fraction), ``..._ci95``, and ``fewshot_discriminant_<subspace>``."""
    flat: dict[str, float] = {}
    for method, by_shots in report["results"].items():
        for k, numbers in by_shots.items():
            flat[f"fewshot_{method}_{k}shot"] = float(numbers["mean"])
            flat[f"fewshot_{method}_{k}shot_ci95"] = float(numbers["ci95"])
    for subspace, value in (report.get("discriminant") or {}).items():
        flat[f"fewshot_discriminant_{subspace}"] = float(value)
    return flat


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate_fewshot(run_dir: str | Path, *, shots: Sequence[int] = (1, 5), episodes: int = 10000, ways: int = 5,
                 queries: int = 15, methods: Sequence[str] = ("ncc",), norm: str = "cl2n", seed: int = 0,
                 split: str | None = None, data_dir: str | None = None, lam: float = 1.0, knn: int = 3,
                 rectify: bool = False, batch_size: int = 256, device: str | torch.device | None = None,
                 base_mean_samples: int | None = 10000, write: bool = True) -> dict[str, Any]:
    """Few-shot accuracy of a trained run's frozen backbone on its split's novel classes (003 Tables 4–5).

    Loads the run with ``featspace.train.load_trained`` (the weights it is evaluated with), extracts the
    novel-class features once and runs ``episodes`` ``ways``-way episodes for each K in ``shots`` with
    ``queries`` queries per class, for each of ``methods`` ("ncc", "laplacianshot"; ``lam``, ``knn``,
    ``rectify`` are LaplacianShot's) after the feature normalization ``norm`` ("none", "l2", "cl2n"). CL2N
    centres by the mean feature of the base training images (of at most ``base_mean_samples`` of them, a
    seeded random subset; None = all). Also computes ``featspace.metrics.discriminant_score`` of the novel
    features with the head's class weights (003 Table 1) when the head has a weight matrix [C, d].

    Returns the report and, with ``write``, saves it as ``RUN_DIR/fewshot.json`` and merges
    :func:`flat_metrics` into ``metrics.json`` and the run's index row (a later ``featspace eval`` rewrites
    metrics.json without them; fewshot.json stays).
    """
    if norm not in NORMS:
        raise ValueError(f"unknown feature normalization {norm!r}; valid: {', '.join(NORMS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown few-shot classifier(s) {unknown}; valid: {', '.join(METHODS)}")
    rundir = RunDir(run_dir)
    config = rundir.read_config()
    split_name = split or split_for_dataset(config.dataset)
    if split_name is None:
        raise ValueError(f"run {rundir.name} was trained on {config.dataset!r}, not on a few-shot split "
                         f"(fewshot_<split>); pass split= (--split) to evaluate it anyway, making sure its training "
                         "classes are not among the split's novel classes")
    # the split's own hold-out seed (0), not the run's: the same split object the training path loaded
    fewshot = load_split(split_name, data_dir=data_dir or config.data_dir)

    # the model alone, from model.json (the training data, an image folder perhaps, is not read again)
    module, _, chosen = load_trained(rundir.path, with_data=not rundir.model.is_file())
    device = torch.device(device) if device is not None else _default_device()
    module.to(device)

    labels = fewshot.test.labels
    features = extract(module.backbone, None, image_batches(fewshot.test.images, labels, fewshot.mean, fewshot.std,
                                                             batch_size=batch_size), device).embeddings
    base_mean = None
    if norm == "cl2n":
        base_images, base_labels = fewshot.train.images, fewshot.train.labels
        if base_mean_samples is not None and base_images.shape[0] > base_mean_samples:
            generator = torch.Generator().manual_seed(seed)
            keep = torch.randperm(base_images.shape[0], generator=generator)[:base_mean_samples]
            base_images, base_labels = base_images[keep], base_labels[keep]
        base_mean = extract(module.backbone, None, image_batches(base_images, base_labels, fewshot.mean, fewshot.std,
                                                                 batch_size=batch_size), device).embeddings.mean(0)

    results = evaluate_features(features, labels, base_mean=base_mean, shots=shots, ways=ways, queries=queries,
                                episodes=episodes, methods=methods, norm=norm, seed=seed, lam=lam, knn=knn,
                                rectify=rectify)
    report: dict[str, Any] = {
        "run": rundir.name, "split": split_name, "checkpoint": chosen.name, "ways": ways, "queries": queries,
        "episodes": episodes, "shots": [int(k) for k in shots], "norm": norm, "seed": seed,
        "laplacianshot": {"lam": lam, "knn": knn, "rectify": rectify} if "laplacianshot" in methods else None,
        "novel_classes": list(fewshot.test.class_names), "novel_samples": int(labels.numel()),
        "feature_dim": int(features.shape[1]), "results": results,
        "discriminant": _discriminant(features, labels, module.head),
    }
    if write:
        rundir.write_fewshot(report)
        metrics = rundir.read_metrics()
        if metrics is not None:
            merged = {**metrics, **flat_metrics(report)}
            rundir.write_metrics(merged)
            _update_index(rundir, merged)
    return report


def _discriminant(features: Tensor, labels: Tensor, head: nn.Module) -> dict[str, float] | None:
    """003 Table 1 on the novel features: σ_B/σ_T in the whole space, the head's classifier subspace W and its
    complement W_⊥ (None when the head has no [C, d] weight matrix)."""
    weight = getattr(head, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.shape[1] != features.shape[1]:
        return None
    return {k: float(v) for k, v in discriminant_score(features.double(), labels,
                                                       weight=weight.detach().double().cpu()).items()}


def _update_index(rundir: RunDir, metrics: dict[str, Any]) -> None:
    try:
        index = RunIndex(rundir.path.parent)
        if index.get(rundir.name) is not None:
            index.update_metrics(rundir.name, metrics)
    except Exception as err:  # the index is a convenience; fewshot.json and metrics.json are already written
        log.warning("could not update the run index beside %s: %s", rundir.path, err)


def fewshot_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A suite's ``fewshot`` section completed with :func:`evaluate_fewshot`'s defaults for what it leaves out."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(evaluate_fewshot).parameters.items()
                if name in FEWSHOT_KEYS}
    return {**defaults, **settings}


def needs_fewshot(rundir: RunDir, metrics: dict[str, Any], settings: dict[str, Any]) -> bool:
    """True when a finished run lacks the few-shot numbers ``settings`` (a suite's ``fewshot`` section) ask for:
    no ``fewshot.json``, one made with other settings, or ``metrics`` (its index row's) without the
    ``fewshot_<method>_<K>shot`` keys (the report reads the index)."""
    wanted = fewshot_settings(settings)
    methods = [str(m) for m in wanted["methods"]]
    shots = [int(k) for k in wanted["shots"]]
    if any(f"fewshot_{m}_{k}shot" not in metrics for m in methods for k in shots):
        return True
    report = rundir.read_fewshot()
    if report is None or not isinstance(report.get("results"), dict):
        return True
    same = (report.get("shots") == shots and report.get("episodes") == wanted["episodes"]
            and report.get("ways") == wanted["ways"] and report.get("queries") == wanted["queries"]
            and report.get("norm") == wanted["norm"] and report.get("seed") == wanted["seed"]
            and all(set(map(str, shots)) <= set(report["results"].get(m) or {}) for m in methods))
    if same and "laplacianshot" in methods:
        used = report.get("laplacianshot") or {}
        same = (used.get("lam") == wanted["lam"] and used.get("knn") == wanted["knn"]
                and used.get("rectify") == wanted["rectify"])
    return not same
