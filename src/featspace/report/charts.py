"""Figures across the runs of a suite: heatmaps of a metric over two axes and scatters of two metrics, one mark
per configuration (the mean over its seeds). Matplotlib's object API on an Agg canvas: no pyplot state, so
drawing is safe in threads and never opens a window."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from featspace.io import atomic_path
from featspace.report.tables import Run
from featspace.suite import Layout

__all__ = ["group_means", "heatmap", "scatter"]


def group_means(runs: list[Run], metric: str) -> dict[str, tuple[dict[str, str], float]]:
    """group -> (its first label set, mean of the metric over its runs) for groups with a finite value."""
    values: dict[str, list[float]] = {}
    labels: dict[str, dict[str, str]] = {}
    for run in runs:
        value = run.metrics.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values.setdefault(run.group, []).append(float(value))
            labels[run.group] = run.label_sets[0]
    return {g: (labels[g], sum(v) / len(v)) for g, v in values.items()}


def heatmap(spec: dict[str, Any], runs: list[Run], layout: Layout, path: Path) -> Path | None:
    metric, x_axis, y_axis = spec["metric"], spec["x"], spec["y"]
    facet_axis = spec.get("facet")
    means = group_means(runs, metric)
    x_labels = layout.axis_labels.get(x_axis, [])
    y_labels = layout.axis_labels.get(y_axis, [])
    facets = [f for f in (layout.axis_labels.get(facet_axis, []) if facet_axis else [""])
              if any(ls.get(facet_axis) == f for ls, _ in means.values()) or not facet_axis]
    grids = []
    for facet in facets:
        grid = np.full((len(y_labels), len(x_labels)), np.nan)
        for labels, value in means.values():
            if facet_axis and labels.get(facet_axis) != facet:
                continue
            if labels.get(x_axis) in x_labels and labels.get(y_axis) in y_labels:
                grid[y_labels.index(labels[y_axis]), x_labels.index(labels[x_axis])] = value
        if not np.isnan(grid).all():
            grids.append((facet, grid))
    if not grids:
        return None
    finite = np.concatenate([g[np.isfinite(g)] for _, g in grids])
    vmin, vmax = float(finite.min()), float(finite.max())
    fig = Figure(figsize=(0.55 * len(x_labels) * len(grids) + 2.5, 0.45 * len(y_labels) + 1.8),
                 layout="constrained")
    axes = fig.subplots(1, len(grids), squeeze=False)
    image = None
    for ax, (facet, grid) in zip(axes[0], grids):
        image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
        ax.set_xticks(range(len(x_labels)), x_labels)
        ax.set_yticks(range(len(y_labels)), y_labels)
        ax.set_xlabel(spec.get("x_name", layout.name(x_axis)))
        ax.set_ylabel(spec.get("y_name", layout.name(y_axis)))
        ax.set_title(facet or spec.get("name", metric))
        if grid.size <= 144:
            middle = (vmin + vmax) / 2
            for (i, j), value in np.ndenumerate(grid):
                if np.isfinite(value):
                    ax.text(j, i, format(value, spec.get("format", ".3g")), ha="center", va="center", fontsize=7,
                            color="black" if value > middle else "white")
    fig.colorbar(image, ax=axes[0].tolist(), label=spec.get("name", metric), shrink=0.9)
    fig.suptitle(spec.get("title", f"{metric}"))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def scatter(spec: dict[str, Any], runs: list[Run], layout: Layout, path: Path) -> Path | None:
    xs = group_means(runs, spec["x"])
    ys = group_means(runs, spec["y"])
    groups = [g for g in xs if g in ys]
    if not groups:
        return None
    color_axis, label_axis = spec.get("color_by"), spec.get("label_by")
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    categories = layout.axis_labels.get(color_axis, [""]) if color_axis else [""]
    cmap = colormaps["tab10"]
    for k, category in enumerate(categories):
        chosen = [g for g in groups if not color_axis or xs[g][0].get(color_axis) == category]
        if not chosen:
            continue
        ax.scatter([xs[g][1] for g in chosen], [ys[g][1] for g in chosen], s=22, alpha=0.8,
                   color=cmap(k % 10), label=category or None)
        if label_axis:
            for g in chosen:
                ax.annotate(xs[g][0].get(label_axis, ""), (xs[g][1], ys[g][1]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(spec.get("x_name", spec["x"]))
    ax.set_ylabel(spec.get("y_name", spec["y"]))
    ax.set_title(spec.get("title", f"{spec['y']} vs {spec['x']}"))
    ax.grid(alpha=0.3)
    if color_axis:
        ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path
