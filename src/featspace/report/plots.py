"""Figures of a run's feature space, as PNG files (matplotlib, Agg canvas, no pyplot state).

- ``plot_embeddings_2d``: test embeddings with centroids / PEDCC points (001 Figs. 2–5; PCA for d > 2 as 001
  Figs. 4–5 do).
- ``plot_centroid_history``: centroids across epochs as a grid of panels (001 Figs. 6–7).
- ``plot_tsne``: 2-D or 3-D t-SNE with the cosine metric (000 Fig. 2; 3-D points put on the unit sphere).
- ``plot_angle_histograms``: positive vs negative pair angles with D_EM and D_KL (004 Fig. 4).
- ``plot_training_curves``: loss and accuracy per epoch from a run's history.

Every function writes its PNG atomically (``featspace.io.atomic_path``: a crash never leaves half a
picture) and returns the path. Classes get a colour-blind-safe palette (Okabe–Ito plus two) up to 10
classes, ``tab20`` up to 20 and evenly spaced ``turbo`` colours beyond; the legend names the classes
(``class_names`` or the class index) and sits outside the axes, never over the points.
Large sets are subsampled uniformly at random with a fixed seed before drawing (the number drawn is said
in the title), because tens of thousands of overlapping points only hide each other.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from featspace.io import atomic_path
from featspace.metrics._inputs import ArrayLike, embeddings_array, labels_array, to_numpy
from featspace.metrics.angular import AngularSeparation

__all__ = [
    "class_colors",
    "plot_angle_histograms",
    "plot_centroid_history",
    "plot_embeddings_2d",
    "plot_training_curves",
    "plot_tsne",
    "tsne_projection",
]

#: Okabe & Ito's colour-blind-safe palette (yellow last: weakest on white), then grey and Tol's wine
COLORBLIND_10 = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#F0E442",
                 "#999999", "#882255")
_DPI = 130
_WIDE_LEGEND = 10  # more classes than this: a wider figure for the legend
_LEGEND_MAX = 60  # more than this: no per-class legend (it would be taller than the figure)


def class_colors(num_classes: int) -> list[str]:
    """One colour per class: colour-blind-safe up to 10, ``tab20`` up to 20, ``turbo`` beyond."""
    from matplotlib import colormaps

    if num_classes <= len(COLORBLIND_10):
        return list(COLORBLIND_10[:num_classes])
    if num_classes <= 20:
        return [to_hex(colormaps["tab20"](k)) for k in range(num_classes)]
    return [to_hex(colormaps["turbo"](v)) for v in np.linspace(0.05, 0.95, num_classes)]


def _names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(num_classes)]
    names = [str(name) for name in class_names]
    if len(names) < num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
    return names


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return target


def _subsample(num_rows: int, max_rows: int, seed: int) -> np.ndarray:
    if num_rows <= max_rows:
        return np.arange(num_rows)
    return np.sort(np.random.default_rng(seed).choice(num_rows, size=max_rows, replace=False))


def _point_size(num_points: int) -> float:
    return float(np.clip(12000 / max(num_points, 1), 2.0, 30.0))


def _legend(ax: Axes, classes: Sequence[int], colors: list[str], names: list[str], *, centroids: bool = False) -> None:
    """Class legend outside the axes (never over the points), with opaque markers big enough to read."""
    if len(classes) > _LEGEND_MAX:
        return
    handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=colors[k], label=names[k])
               for k in classes]
    if centroids:
        handles.append(Line2D([], [], linestyle="", marker="X", markersize=10, markerfacecolor="white",
                              markeredgecolor="black", markeredgewidth=1.3, label="centroid"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="class",
              title_fontsize=8, ncol=math.ceil(len(handles) / 25), borderaxespad=0.0, frameon=False)


def _pca(fit_on: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [d], components [d, 2], explained variance ratio [2]) of a 2-component PCA."""
    mean = fit_on.mean(axis=0)
    _, singular_values, right = np.linalg.svd(fit_on - mean, full_matrices=False)
    variance = singular_values**2
    ratio = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    components = right[:2].T
    if components.shape[1] < 2:  # fewer rows than 2: pad with a zero direction
        components = np.pad(components, ((0, 0), (0, 2 - components.shape[1])))
        ratio = np.pad(ratio, (0, 2 - ratio.size))
    # a fixed sign per component, so the same data always gives the same picture
    signs = np.sign(components[np.abs(components).argmax(axis=0), range(2)])
    signs[signs == 0] = 1
    return mean, components * signs, ratio


def _axis_labels(dim: int, ratio: np.ndarray | None) -> tuple[str, str]:
    if dim == 2 or ratio is None:
        return "embedding dimension 1", "embedding dimension 2"
    return (f"PC 1 of the {dim}-d embeddings ({100 * ratio[0]:.0f}% of variance)",
            f"PC 2 ({100 * ratio[1]:.0f}% of variance)")


def _draw_classes(ax: Axes, points: np.ndarray, labels: np.ndarray, colors: list[str], names: list[str],
                  *, size: float) -> None:
    for k in np.unique(labels):
        chosen = labels == k
        ax.scatter(points[chosen, 0], points[chosen, 1], s=size, color=colors[k], alpha=0.55, linewidths=0,
                   label=names[k], rasterized=True)


def _draw_centroids(ax: Axes, points: np.ndarray, colors: list[str], *, size: float = 170.0) -> None:
    finite = np.isfinite(points).all(axis=1)
    ax.scatter(points[finite, 0], points[finite, 1], s=size, marker="X", c=[colors[k] for k in np.flatnonzero(finite)],
               edgecolors="black", linewidths=1.3, zorder=5)


def plot_embeddings_2d(
    embeddings: ArrayLike,
    labels: ArrayLike,
    path: str | os.PathLike[str],
    *,
    centroids: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    max_points: int = 5000,
    seed: int = 0,
) -> Path:
    """Scatter of ``embeddings`` [N, d] coloured by ``labels`` [N], with ``centroids`` [C, d] as large ✕.

    d = 2 is drawn as is (001 Figs. 2–3); for d > 2 the first two principal components, fitted on all N
    embeddings, are drawn (001 Figs. 4–5) and the centroids are projected with the same PCA; the axis labels
    say which. Above ``max_points`` a uniform random subset (``seed``) is drawn; the PCA still uses all rows.
    Axes have equal scale, so angles in the picture are angles in the plane.
    """
    x = embeddings_array(embeddings)
    y = labels_array(labels, x.shape[0])
    width = x.shape[1]
    if width < 2:
        raise ValueError(f"plot_embeddings_2d needs embeddings of width >= 2, got {x.shape[1]}")
    c = None if centroids is None else to_numpy(centroids).astype(np.float64)
    if c is not None and (c.ndim != 2 or c.shape[1] != x.shape[1]):
        raise ValueError(f"centroids must have shape [C, {x.shape[1]}], got {tuple(c.shape)}")
    num_classes = max(int(y.max()) + 1, 0 if c is None else c.shape[0])
    colors, names = class_colors(num_classes), _names(num_classes, class_names)

    ratio = None
    if x.shape[1] > 2:
        mean, components, ratio = _pca(x)
        x = (x - mean) @ components
        c = None if c is None else (c - mean) @ components
    shown = _subsample(x.shape[0], max_points, seed)

    fig = Figure(figsize=(7.5 if num_classes <= _WIDE_LEGEND else 9.0, 6.5), layout="constrained")
    ax = fig.add_subplot()
    _draw_classes(ax, x[shown], y[shown], colors, names, size=_point_size(shown.size))
    if c is not None:
        _draw_centroids(ax, c, colors)
    ax.set_aspect("equal", adjustable="datalim")
    xlabel, ylabel = _axis_labels(width, ratio)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.25)
    subset = f" ({shown.size} of {x.shape[0]} points)" if shown.size < x.shape[0] else ""
    ax.set_title((title.strip() if title and title.strip() else "Embeddings") + subset)
    _legend(ax, sorted(set(np.unique(y[shown]).tolist()) | set(range(0 if c is None else c.shape[0]))), colors,
            names, centroids=c is not None)
    return _save(fig, path)


def plot_centroid_history(
    history: ArrayLike,
    path: str | os.PathLike[str],
    *,
    embeddings_per_epoch: Sequence[ArrayLike | None] | None = None,
    labels_per_epoch: Sequence[ArrayLike | None] | None = None,
    class_names: Sequence[str] | None = None,
    epochs: Sequence[int] | None = None,
    max_panels: int = 10,
    max_points: int = 2000,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Centroids across training as a grid of panels, one per epoch (001 Figs. 6–7).

    history [E, C, d]: the centroids after each epoch (epoch numbers ``epochs``, default 1..E).
    embeddings_per_epoch / labels_per_epoch: optionally, per epoch, embeddings [N_e, d] and labels [N_e] drawn
        under the centroids (subsampled to ``max_points`` per panel); an entry may be None.
    With more than ``max_panels`` epochs, ``max_panels`` epochs spread evenly from the first to the last are
    shown (the paper shows 10: 1–5, 8, 11, 14, 17, 20). For d > 2 one PCA, fitted on the centroids of all
    epochs (and the drawn embeddings), projects every panel, and all panels share their axis limits, so a
    centroid's movement between panels is real. Each panel also traces every centroid's path so far.
    """
    h = to_numpy(history).astype(np.float64)
    if h.ndim != 3 or h.shape[0] < 1 or h.shape[2] < 2:
        raise ValueError(f"history must have shape [E, C, d] with E >= 1 and d >= 2, got {tuple(h.shape)}")
    if not np.isfinite(h).all():
        raise ValueError("history contains NaN or infinite values")
    num_epochs, num_classes, dim = h.shape
    epoch_numbers = list(range(1, num_epochs + 1)) if epochs is None else [int(e) for e in epochs]
    if len(epoch_numbers) != num_epochs:
        raise ValueError(f"epochs has {len(epoch_numbers)} entries for {num_epochs} epochs")
    points: list[tuple[np.ndarray, np.ndarray] | None] = [None] * num_epochs
    if embeddings_per_epoch is not None:
        if labels_per_epoch is None or len(embeddings_per_epoch) != num_epochs or len(labels_per_epoch) != num_epochs:
            raise ValueError("embeddings_per_epoch and labels_per_epoch need one entry (or None) per epoch")
        for e, (emb, lab) in enumerate(zip(embeddings_per_epoch, labels_per_epoch)):
            if emb is None:
                continue
            xe = embeddings_array(emb, f"embeddings_per_epoch[{e}]")
            if xe.shape[1] != dim:
                raise ValueError(f"embeddings_per_epoch[{e}] has width {xe.shape[1]}, the centroids {dim}")
            ye = labels_array(lab, xe.shape[0], f"labels_per_epoch[{e}]")
            keep = _subsample(xe.shape[0], max_points, seed + e)
            points[e] = (xe[keep], ye[keep])
    label_max = max([int(p[1].max()) + 1 for p in points if p is not None and p[1].size] + [num_classes])
    colors, names = class_colors(label_max), _names(label_max, class_names)

    panels = np.unique(np.round(np.linspace(0, num_epochs - 1, min(max_panels, num_epochs))).astype(int))
    ratio = None
    if dim > 2:
        fit_on = [h.reshape(-1, dim)] + [points[e][0] for e in panels if points[e] is not None]
        mean, components, ratio = _pca(np.concatenate(fit_on))
        h = (h - mean) @ components
        points = [None if p is None else ((p[0] - mean) @ components, p[1]) for p in points]

    drawn = [h[panels].reshape(-1, 2)] + [points[e][0] for e in panels if points[e] is not None]
    everything = np.concatenate(drawn)
    low, high = everything.min(axis=0), everything.max(axis=0)
    pad = 0.06 * np.maximum(high - low, 1e-9)
    columns = min(5, panels.size)
    rows = math.ceil(panels.size / columns)
    fig = Figure(figsize=(3.1 * columns + (1.6 if num_classes > _WIDE_LEGEND else 0.4), 3.1 * rows + 1.0),
                 layout="constrained")
    # small tick labels through the rc settings the axes are made with: tick_params on each of ten shared
    # axes rebuilt their ticks again and again (most of this figure's second)
    with rc_context({"xtick.labelsize": 7, "ytick.labelsize": 7}):
        axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax, e in zip(axes.flat, panels):
        if points[e] is not None:
            _draw_classes(ax, points[e][0], points[e][1], colors, names, size=_point_size(points[e][0].shape[0]) / 3)
        # every centroid's path so far, one collection per panel rather than a line per class
        ax.add_collection(LineCollection([h[: e + 1, k] for k in range(num_classes)], colors=colors[:num_classes],
                                         linewidths=0.9, alpha=0.7))
        _draw_centroids(ax, h[e], colors, size=90.0)
        ax.set_title(f"epoch {epoch_numbers[e]}", fontsize=10)
        ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
        ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
        ax.grid(alpha=0.25)
    for ax in list(axes.flat)[panels.size:]:
        ax.set_visible(False)
    xlabel, ylabel = _axis_labels(dim, ratio)
    fig.supxlabel(xlabel, fontsize=9)
    fig.supylabel(ylabel, fontsize=9)
    handles = [Line2D([], [], marker="X", linestyle="-", color=colors[k], markeredgecolor="black", markersize=8,
                      label=names[k]) for k in range(num_classes)]
    if num_classes <= _LEGEND_MAX:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="class (✕ centroid, line: path)",
                   title_fontsize=8, ncol=math.ceil(num_classes / 20), frameon=False)
    fig.suptitle(title or "Class centroids during training")
    return _save(fig, path)


#: openTSNE's schedule in featspace: early-exaggeration iterations, then the plain ones (openTSNE's defaults are
#: 250 + 500). benchmarks/tsne.py scores both against one exact affinity matrix: the shorter exaggeration phase
#: reaches the same KL divergence (within the spread over seeds); 125 + 375 did not (about 1% higher)
TSNE_ITERATIONS = (125, 500)
#: up to this many points the neighbours behind the affinities are found exactly (brute force costs less than
#: building Annoy's index for a few thousand points, and the affinities are then the exact ones)
TSNE_EXACT_NEIGHBOURS = 10_000


def tsne_projection(x: np.ndarray, *, dim: int = 2, metric: str = "cosine", seed: int = 0, perplexity: float = 30.0,
                    method: str = "auto", iterations: tuple[int, int] = TSNE_ITERATIONS,
                    neighbors: str = "auto") -> tuple[np.ndarray, float]:
    """t-SNE of ``x`` [N, d] into ``dim`` dimensions; returns (points [N, dim], the final KL divergence).

    ``method``: ``"opentsne"`` (openTSNE's Barnes–Hut gradient, PCA initialisation, ``iterations``
    early-exaggeration + plain iterations, every core; ``neighbors`` "exact", "annoy" or "auto": exact up to
    ``TSNE_EXACT_NEIGHBOURS`` points, Annoy's index beyond), ``"sklearn"`` (``sklearn.manifold.TSNE``, PCA
    initialisation, 1000 iterations) or ``"auto"``: openTSNE where it is installed (the ``train`` extra installs
    it), else scikit-learn. Both minimise the same objective with the same perplexity and metric;
    ``benchmarks/tsne.py`` scores them on the same points against one exact affinity matrix (its table is in the
    README). ``perplexity`` is lowered to (N − 1)/3 for tiny sets, as both require. The returned KL divergence is
    each method's own, against its own affinities."""
    if method not in ("auto", "opentsne", "sklearn"):
        raise ValueError(f"method must be auto, opentsne or sklearn, got {method!r}")
    perplexity = min(perplexity, (x.shape[0] - 1) / 3)
    if method in ("auto", "opentsne"):
        try:
            import openTSNE
        except ModuleNotFoundError:
            if method == "opentsne":
                raise
        else:
            early, plain = iterations
            if neighbors == "auto":
                neighbors = "exact" if x.shape[0] <= TSNE_EXACT_NEIGHBOURS else "annoy"
            # Barnes-Hut: for a few thousand points faster than the FFT interpolation here (3000 points: 25 s
            # against 7 s), and the only one for 3-D
            embedding = openTSNE.TSNE(
                n_components=dim, metric=metric, perplexity=perplexity, initialization="pca", random_state=seed,
                n_jobs=os.cpu_count() or 1, negative_gradient_method="bh", early_exaggeration_iter=early,
                n_iter=plain, neighbors=neighbors,
            ).fit(np.ascontiguousarray(x, dtype=np.float64))
            return np.asarray(embedding), float(embedding.kl_divergence)
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=dim, metric=metric, init="pca", random_state=seed, perplexity=perplexity)
    return tsne.fit_transform(x), float(tsne.kl_divergence_)


def plot_tsne(
    embeddings: ArrayLike,
    labels: ArrayLike,
    path: str | os.PathLike[str],
    *,
    dim: int = 2,
    metric: str = "cosine",
    seed: int = 0,
    max_samples: int = 3000,
    class_names: Sequence[str] | None = None,
    perplexity: float = 30.0,
    sphere: bool | None = None,
    title: str | None = None,
) -> Path:
    """t-SNE of ``embeddings`` [N, d] coloured by ``labels`` [N] (000 Fig. 2: 3-D, cosine metric).

    The projection is :func:`tsne_projection` (openTSNE's Barnes–Hut t-SNE where openTSNE is installed, else
    scikit-learn's) on at most ``max_samples`` rows (a uniform random subset, ``seed``; 000 used 5000 test
    images); ``perplexity`` is lowered to (n − 1)/3 for tiny sets. ``sphere`` (default: True for 3-D, as 000 Fig. 2
    "constrained to lie on the unit sphere") scales every centred 3-D point to unit length.
    """
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    x = embeddings_array(embeddings, min_rows=4)
    y = labels_array(labels, x.shape[0])
    total = x.shape[0]
    shown = _subsample(total, max_samples, seed)
    x, y = x[shown], y[shown]
    num_classes = int(y.max()) + 1
    colors, names = class_colors(num_classes), _names(num_classes, class_names)
    projected, _ = tsne_projection(x, dim=dim, metric=metric, seed=seed, perplexity=perplexity)
    on_sphere = dim == 3 if sphere is None else sphere
    if on_sphere:
        centred = projected - projected.mean(axis=0)
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        projected = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)

    fig = Figure(figsize=(7.5 if num_classes <= _WIDE_LEGEND else 9.0, 6.5), layout="constrained")
    if dim == 2:
        ax = fig.add_subplot()
        _draw_classes(ax, projected, y, colors, names, size=_point_size(x.shape[0]))
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_aspect("equal", adjustable="datalim")
    else:
        ax = fig.add_subplot(projection="3d")
        for k in np.unique(y):
            chosen = y == k
            ax.scatter(projected[chosen, 0], projected[chosen, 1], projected[chosen, 2], s=_point_size(x.shape[0]),
                       color=colors[k], alpha=0.6, linewidths=0, label=names[k], depthshade=True)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_zlabel("t-SNE 3")
        ax.set_box_aspect((1, 1, 1))
        ax.tick_params(labelsize=7)
    subset = f", {x.shape[0]} of {total} points" if x.shape[0] < total else f", {total} points"
    sphere_note = ", on the unit sphere" if on_sphere else ""
    ax.set_title((title or f"{dim}-D t-SNE") + f" ({metric} metric{subset}{sphere_note})")
    _legend(ax, np.unique(y).tolist(), colors, names)
    return _save(fig, path)


def plot_angle_histograms(separation: AngularSeparation | Any, path: str | os.PathLike[str], *,
                          title: str | None = None) -> Path:
    """Histograms of the positive- and negative-pair angles of ``separation`` (004 Fig. 4), each normalized to
    fractions of its pairs, with the mean angles marked and D_EM (degrees) and D_KL in the title.

    ``separation``: an :class:`AngularSeparation`, or anything with its histogram fields (``histogram_edges``,
    ``positive_hist``, ``negative_hist``, the means, pair counts, ``d_em``, ``d_kl``, ``sampled``) such as a
    run's ``pair_angles.json`` read back; the angle samples themselves are not needed."""
    edges = np.asarray(separation.histogram_edges)
    widths = np.diff(edges)
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    sample_note = " sampled" if separation.sampled else ""
    for hist, mean, count, color, kind in (
        (separation.positive_hist, separation.positive_mean, separation.n_positive_pairs, COLORBLIND_10[0],
         "positive (same class)"),
        (separation.negative_hist, separation.negative_mean, separation.n_negative_pairs, COLORBLIND_10[3],
         "negative (different classes)"),
    ):
        label = f"{kind}: {count:,}{sample_note} pairs" + (f", mean {mean:.1f}°" if math.isfinite(mean) else "")
        # one filled step patch, not a bar per bin: hundreds of bars took most of this figure's second
        ax.stairs(hist, edges, fill=True, color=color, alpha=0.45, linewidth=0)
        ax.stairs(hist, edges, color=color, linewidth=1.4, label=label)
        if math.isfinite(mean):
            ax.axvline(mean, color=color, linestyle="--", linewidth=1.0)
    populated = np.flatnonzero((np.asarray(separation.positive_hist) > 0) | (np.asarray(separation.negative_hist) > 0))
    if populated.size:
        left = max(0.0, edges[populated[0]] - 5.0)
        right = min(180.0, edges[populated[-1] + 1] + 5.0)
        ax.set_xlim(left, right)
    ax.set_xlabel("angle between the two embeddings of a pair (degrees)")
    ax.set_ylabel(f"fraction of pairs per {widths.mean():.3g}° bin")
    ax.grid(alpha=0.25)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    heading = title.strip() if title and title.strip() else "Angles of positive and negative pairs"
    if math.isfinite(separation.d_em):
        distances = f"D_EM = {separation.d_em:.2f}°   D_KL = {separation.d_kl:.3f}"
    else:
        distances = "D_EM and D_KL undefined: " + ("no positive pairs" if separation.n_positive_pairs == 0
                                                   else "no negative pairs")
    ax.set_title(f"{heading}\n{distances}", fontsize=11)
    return _save(fig, path)


_CURVES = {"loss": ("train_loss", "val_loss"), "accuracy": ("train_acc", "val_acc")}


def _read_history(history: Sequence[Mapping[str, Any]] | str | os.PathLike[str]) -> list[dict[str, float]]:
    if isinstance(history, (str, os.PathLike)):
        with open(history, newline="", encoding="utf-8") as handle:
            rows: list[Mapping[str, Any]] = list(csv.DictReader(handle))
    else:
        rows = list(history)
    parsed = []
    for row in rows:
        values = {}
        for key, value in row.items():
            try:
                values[str(key)] = float(value) if value not in (None, "") else math.nan
            except (TypeError, ValueError):
                values[str(key)] = math.nan
        parsed.append(values)
    return parsed


def plot_training_curves(history: Sequence[Mapping[str, Any]] | str | os.PathLike[str],
                         path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Loss and accuracy per epoch, training and validation, from ``history``.

    ``history``: a list of dicts, or the path of a CSV file, with the columns ``epoch``, ``train_loss``,
    ``val_loss``, ``train_acc``, ``val_acc`` (any subset with at least one curve; missing or empty cells, as
    in Lightning's CSV logs where train and validation rows alternate, are skipped per curve). Without an
    ``epoch`` column rows are numbered 1, 2, ... One panel for the losses and one for the accuracies.
    """
    rows = _read_history(history)
    columns = {key for row in rows for key in row}
    panels = [(name, [c for c in keys if c in columns]) for name, keys in _CURVES.items()]
    panels = [(name, keys) for name, keys in panels if keys]
    if not panels:
        raise ValueError(f"history has none of the columns {sorted(sum(_CURVES.values(), ()))}; got {sorted(columns)}")
    epoch = np.array([row.get("epoch", math.nan) for row in rows])
    if np.isnan(epoch).all():
        epoch = np.arange(1, len(rows) + 1, dtype=np.float64)

    fig = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    styles = {"train": (COLORBLIND_10[0], "-", "o"), "val": (COLORBLIND_10[3], "--", "s")}
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            values = np.array([row.get(key, math.nan) for row in rows])
            keep = np.isfinite(values) & np.isfinite(epoch)
            split = key.split("_")[0]
            color, linestyle, marker = styles[split]
            ax.plot(epoch[keep], values[keep], color=color, linestyle=linestyle,
                    marker=marker if keep.sum() <= 40 else None, markersize=4,
                    label="training" if split == "train" else "validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.set_title(name.capitalize())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Training curves")
    return _save(fig, path)
