"""The figures of one run, drawn from what its directory holds (``featspace.rundir``), after training.

    embeddings.npz        ─► plots/embeddings.png (and feature_space.png for a head with its own space), tsne.png
    centroid_history.npz  ─► plots/centroids_per_epoch.png
    pair_angles.json      ─► plots/angles.png (the histograms behind D_EM and D_KL, computed once by the evaluation)
    history.csv           ─► plots/training_curves.png

Training draws nothing; the ``train``, ``eval``, ``demo`` and ``bench`` commands call :func:`draw_run_figures`
on the finished run, and it can be called again at any time on any run directory.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from featspace.report import plots
from featspace.rundir import RunDir
from featspace.timing import Stopwatch

__all__ = ["draw_run_figures"]


def _angles(histogram: dict[str, Any]) -> SimpleNamespace:
    # JSON holds NaN as null (featspace.io.write_json); the figure wants floats
    values = {k: (math.nan if v is None else v) for k, v in histogram.items()}
    return SimpleNamespace(**values)


def draw_run_figures(run_dir: str | Path, *, tsne: bool | None = None,
                     timings: dict[str, float] | None = None) -> list[Path]:
    """Every figure of a finished run into ``RUN_DIR/plots/``; returns the written paths. ``tsne``: draw the
    t-SNE (seconds on a CPU for 3,000 points); default the run's ``tsne`` setting. ``timings``, when given,
    receives the seconds of each figure, keyed by its file name (reading the run's files: "read files")."""
    clock = Stopwatch(timings)
    rundir = RunDir(run_dir)
    config = rundir.read_config()
    arrays = rundir.read_embeddings()
    title = f"{config.head} / {config.dataset}"
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None
    embeddings, labels = arrays["test_embeddings"], arrays["test_labels"]
    centroids = arrays.get("learned_centroids")
    out = rundir.plots
    written: list[Path] = []
    clock.lap("read files")
    # the centroids live in the head's feature space (Head.learned_centroids): they are drawn there, and on the
    # raw embeddings only where the two spaces are the same (a normalised ICV head's centroids sit near the
    # unit circle, which is not where its raw embeddings are)
    own_space = "test_feature_space" in arrays
    written.append(plots.plot_embeddings_2d(embeddings, labels, out / "embeddings.png",
                                            centroids=None if own_space else centroids, class_names=names,
                                            title=f"{title} test embeddings"))
    clock.lap(written[-1].name)
    if own_space:
        written.append(plots.plot_embeddings_2d(arrays["test_feature_space"], labels, out / "feature_space.png",
                                                centroids=centroids, class_names=names,
                                                title=f"{title} head feature space"))
        clock.lap(written[-1].name)
    history = rundir.read_centroid_history()
    if history is not None and len(history[0]) > 0:
        centroids_per_epoch, source = history
        what = ("class means of each epoch's training embeddings" if source == "class_means"
                else "learned centroids after each epoch")
        written.append(plots.plot_centroid_history(centroids_per_epoch, out / "centroids_per_epoch.png",
                                                   class_names=names, title=f"{title}: {what}"))
        clock.lap(written[-1].name)
    angles = rundir.read_pair_angles()
    if angles is not None:
        written.append(plots.plot_angle_histograms(_angles(angles), out / "angles.png",
                                                   title=f"{title} pair angles"))
        clock.lap(written[-1].name)
    if rundir.history.is_file():
        written.append(plots.plot_training_curves(rundir.history, out / "training_curves.png",
                                                  title=f"{title} training curves"))
        clock.lap(written[-1].name)
    if config.tsne if tsne is None else tsne:
        written.append(plots.plot_tsne(embeddings, labels, out / "tsne.png", seed=config.seed, class_names=names,
                                       title=f"{title} test embeddings, 2-D t-SNE"))
        clock.lap(written[-1].name)
    return [Path(p) for p in written]
