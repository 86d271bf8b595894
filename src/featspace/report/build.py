"""``build_report``: a suite's finished runs (or any run directories) as Markdown, HTML and CSV, with figures.

    index rows of (suite, status "finished")  ─► runs matched to the suite's cells by cell key
      ─► tables (featspace.report.tables)      ─► report.md, report.html (self-contained), results.csv, runs.csv
      ─► heatmaps and scatters (matplotlib)    ─► figures/*.png
      ─► the runs' own plots (embeddings, angle histograms, ...) of a representative run per configuration,
         copied into figures/ so that the report folder stands alone (it can be committed or mailed)

Default output folder: ``<root>/reports/<suite>/`` (beside the runs it reads, never inside the package or the
current directory's docs); pass ``out_dir`` (``--out``) to write elsewhere, e.g. ``docs/results/<suite>``.
Every file is written atomically (``featspace.io``). Each report records the code version, torch version,
device and date of its making, and the code versions the runs were made with.

Suite sections used here (beside ``tables``)::

    heatmaps: [{metric: d_em, name: "D_EM (deg)", x: head_params.margin, y: head_params.scale, facet: head,
                title: "..."}]                 # one panel per facet label, a shared colour scale
    scatters: [{x: d_kl, y: d_em, x_name: D_KL, y_name: D_EM, color_by: head, label_by: head, title: "..."}]
    figures:  [{title: "...", plots: [embeddings.png, angles.png], where: {axis: label or [labels]}}]

A heatmap or scatter point is the mean over seeds of a configuration; figures come from the lowest-seed
finished run of each configuration that passes ``where`` (at most ``max_figures`` configurations per entry).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from featspace.bench.suite import NON_RESULT_FIELDS, Axis, Choice, Suite, cell_hash, load_suite
from featspace.io import atomic_path, read_json, write_text
from featspace.report.tables import (
    Layout,
    Run,
    Table,
    build_table,
    parse_table,
    runs_to_csv,
    table_to_markdown,
    tables_to_csv,
)
from featspace.train.runs import DEFAULT_ROOT, RunIndex, code_version

__all__ = ["Figure", "FigureSection", "Report", "ReportPaths", "build_report", "collect_report", "environment"]

#: the metrics of a report on run directories that name no suite
DEFAULT_METRICS = [
    {"key": "accuracy", "name": "accuracy (%)", "scale": 100, "format": ".2f"},
    {"key": "ncc_accuracy", "name": "NCC acc. (%)", "scale": 100, "format": ".2f"},
    {"key": "silhouette", "name": "silhouette", "format": ".3f"},
    {"key": "davies_bouldin", "name": "Davies-Bouldin", "format": ".2f", "higher_is_better": False},
    {"key": "d_em", "name": "D_EM (deg)", "format": ".1f"},
    {"key": "d_kl", "name": "D_KL", "format": ".2f"},
    # few-shot runs (featspace fewshot / a suite's fewshot section): ± of a single run is its episodes' 95% CI
    {"key": "fewshot_ncc_1shot", "name": "NCC 1-shot (%)", "scale": 100, "format": ".2f",
     "ci_key": "fewshot_ncc_1shot_ci95"},
    {"key": "fewshot_ncc_5shot", "name": "NCC 5-shot (%)", "scale": 100, "format": ".2f",
     "ci_key": "fewshot_ncc_5shot_ci95"},
    {"key": "fewshot_laplacianshot_1shot", "name": "LaplacianShot 1-shot (%)", "scale": 100, "format": ".2f",
     "ci_key": "fewshot_laplacianshot_1shot_ci95"},
    {"key": "fewshot_laplacianshot_5shot", "name": "LaplacianShot 5-shot (%)", "scale": 100, "format": ".2f",
     "ci_key": "fewshot_laplacianshot_5shot_ci95"},
]

_CELL_SEED = re.compile(r"^(?P<group>.+)-s(?P<seed>-?\d+)$")


@dataclass
class Figure:
    path: Path          # inside the report's folder
    caption: str


@dataclass
class FigureSection:
    title: str
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    """Everything a report shows, independent of the format it is written in."""

    title: str
    description: str = ""
    source: str = ""
    notes: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    sections: list[FigureSection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    axes: list[str] = field(default_factory=list)


@dataclass
class ReportPaths:
    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    runs_csv: Path
    figures: list[Path]


# ------------------------------------------------------------------------------------------ environment
def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    except Exception:  # a report must not fail for want of a GPU query
        pass
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} logical cores"


def environment(runs: Sequence[Any] = ()) -> dict[str, str]:
    """Code version, torch version, device and date of the report's making, and the runs' code versions."""
    import torch

    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "featspace": code_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device (report)": _device(),
    }
    versions = sorted({str(v) for v in (getattr(r, "code_version", None) for r in runs) if v})
    if versions:
        info["featspace (runs)"] = ", ".join(versions)
    accelerators = sorted({str(r.config.get("accelerator")) for r in runs if r.config.get("accelerator")})
    if accelerators:
        info["accelerator (runs' config)"] = ", ".join(accelerators)
    return info


# ----------------------------------------------------------------------------------------- gathering
@dataclass
class _IndexedRun(Run):
    code_version: str | None = None


def _suite_runs(suite: Suite, root: Path, overrides: Sequence[str]) -> tuple[list[Run], Layout, list[str]]:
    layout = Layout.from_suite(suite, overrides)
    expected = {c.group: c.label_sets for c in suite.expand(seeds=[suite.seeds[0]], overrides=list(overrides))}
    warnings: list[str] = []
    if not (root / "index.sqlite").is_file():
        return [], layout, [f"no run index at {root / 'index.sqlite'}: run `featspace bench {suite.name}` first"]
    latest: dict[str, Any] = {}
    for record in RunIndex(root).query(suite=suite.name, status="finished"):
        latest[record.cell or record.id] = record  # oldest first: the last one wins if a cell finished twice
    runs: list[Run] = []
    unmatched = 0
    for key, record in latest.items():
        match = _CELL_SEED.match(key)
        group = match.group("group") if match else key
        if group not in expected:
            unmatched += 1
            continue
        runs.append(_IndexedRun(id=record.id, group=group, seed=record.seed, label_sets=expected[group],
                                config=record.config, metrics=record.metrics, path=record.path,
                                code_version=record.code_version))
    # the suite's cell order, not the order the runs finished in: a cell retrained later keeps its place among
    # the figures
    order = {group: k for k, group in enumerate(expected)}
    runs.sort(key=lambda run: (order[run.group], run.seed if run.seed is not None else 0))
    if unmatched:
        warnings.append(f"{unmatched} finished run(s) of suite {suite.name} under {root} belong to no cell of the "
                        "suite as defined now (another --set, or an edited suite or recipe) and are left out")
    return runs, layout, warnings


def _flat_config(config: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in config.items() if k != "head_params"}
    for k, v in (config.get("head_params") or {}).items():
        flat[f"head_params.{k}"] = v
    return flat


def _label(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _dir_runs(run_dirs: Sequence[str | Path]) -> tuple[list[Run], Suite, list[str]]:
    """Runs read from their directories (config.yaml and metrics.json), with axes = the config keys that vary."""
    warnings: list[str] = []
    loaded = []
    for run_dir in run_dirs:
        path = Path(run_dir)
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"{path} is not a featspace run directory (no config.yaml)")
        if not (path / "metrics.json").is_file():
            warnings.append(f"{path} has no metrics.json (not finished); left out")
            continue
        with open(path / "config.yaml", encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
        loaded.append((path, config, read_json(path / "metrics.json")))
    flats = [_flat_config(c) for _, c, _ in loaded]
    keys: list[str] = []
    for flat in flats:
        keys.extend(k for k in flat if k not in keys)
    varying = [k for k in keys if k != "seed" and k not in NON_RESULT_FIELDS
               and len({repr(f.get(k)) for f in flats}) > 1]
    if "head" in keys and "head" not in varying:
        varying.insert(0, "head")
    axes = []
    for key in varying:
        labels: list[str] = []
        for flat in flats:
            label = _label(flat.get(key))
            if label not in labels:
                labels.append(label)
        axes.append(Axis(key, tuple(Choice(label, {}) for label in labels)))
    suite = Suite(name="runs", recipe="", blocks=[axes])
    runs = []
    for (path, config, metrics), flat in zip(loaded, flats):
        labels = {key: _label(flat.get(key)) for key in varying}
        runs.append(Run(id=path.name, group=cell_hash(config), seed=config.get("seed"), label_sets=[labels],
                        config=config, metrics=metrics, path=str(path)))
    return runs, suite, warnings


# -------------------------------------------------------------------------------------------- figures
def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")
    return slug[:80] or "x"


def _group_means(runs: list[Run], metric: str) -> dict[str, tuple[dict[str, str], float]]:
    """group -> (its first label set, mean of the metric over its runs) for groups with a finite value."""
    values: dict[str, list[float]] = {}
    labels: dict[str, dict[str, str]] = {}
    for run in runs:
        value = run.metrics.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values.setdefault(run.group, []).append(float(value))
            labels[run.group] = run.label_sets[0]
    return {g: (labels[g], sum(v) / len(v)) for g, v in values.items()}


def _heatmap(spec: dict[str, Any], runs: list[Run], layout: Layout, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metric, x_axis, y_axis = spec["metric"], spec["x"], spec["y"]
    facet_axis = spec.get("facet")
    means = _group_means(runs, metric)
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
    fig, axes = plt.subplots(1, len(grids), figsize=(0.55 * len(x_labels) * len(grids) + 2.5, 0.45 * len(y_labels)
                                                      + 1.8), squeeze=False, constrained_layout=True)
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
    plt.close(fig)
    return path


def _scatter(spec: dict[str, Any], runs: list[Run], layout: Layout, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = _group_means(runs, spec["x"])
    ys = _group_means(runs, spec["y"])
    groups = [g for g in xs if g in ys]
    if not groups:
        return None
    color_axis, label_axis = spec.get("color_by"), spec.get("label_by")
    fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
    categories = layout.axis_labels.get(color_axis, [""]) if color_axis else [""]
    cmap = plt.get_cmap("tab10")
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
    plt.close(fig)
    return path


def _where_matches(labels: dict[str, str], where: Any) -> bool:
    clauses = where if isinstance(where, list) else ([where] if where else [])
    if not clauses:
        return True
    for clause in clauses:
        if all(labels.get(str(axis)) in [None if v is None else _label(v) for v in
                                         (wanted if isinstance(wanted, list) else [wanted])]
               for axis, wanted in clause.items()):
            return True
    return False


def _is_png(path: Path) -> bool:
    """A regular file (not a link: reports copy from other people's run folders) with the PNG signature."""
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89PNG\r\n\x1a\n"


def _run_figures(spec: dict[str, Any], runs: list[Run], out_dir: Path, max_figures: int) -> FigureSection:
    section = FigureSection(str(spec.get("title", "Figures")))
    representative: dict[str, Run] = {}
    for run in runs:  # the lowest seed of each configuration that passes `where`
        if not any(_where_matches(ls, spec.get("where")) for ls in run.label_sets):
            continue
        best = representative.get(run.group)
        if best is None or (run.seed if run.seed is not None else 0) < (best.seed if best.seed is not None else 0):
            representative[run.group] = run
    for run in list(representative.values())[:max_figures]:
        labels = next((ls for ls in run.label_sets if _where_matches(ls, spec.get("where"))), run.label_sets[0])
        caption = ", ".join(f"{v}" for v in labels.values()) + f" (seed {run.seed}, run {run.id})"
        for plot in spec.get("plots", []):
            source = Path(run.path) / "plots" / str(plot)
            if not _is_png(source):
                continue
            target = out_dir / "figures" / f"{_slug(run.id)}-{_slug(str(plot))}"
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
            section.figures.append(Figure(target, f"{caption}: {plot}"))
    return section


# ------------------------------------------------------------------------------------------ the report
def _is_suite_argument(value: Any) -> bool:
    if isinstance(value, Suite):
        return True
    if isinstance(value, (str, Path)):
        path = Path(value)
        return not (path / "config.yaml").is_file()
    return False


def collect_report(suite_or_run_dirs: str | Path | Suite | Sequence[str | Path], *, root: str | Path = DEFAULT_ROOT,
                   out_dir: str | Path | None = None, overrides: Sequence[str] = (), max_figures: int = 24,
                   ) -> tuple[Report, Path]:
    """The :class:`Report` (tables built, figures written under ``out_dir``) and its folder."""
    root = Path(root)
    if _is_suite_argument(suite_or_run_dirs):
        suite = suite_or_run_dirs if isinstance(suite_or_run_dirs, Suite) else load_suite(suite_or_run_dirs)
        runs, layout, warnings = _suite_runs(suite, root, overrides)
        table_specs = [parse_table(t, layout) for t in suite.tables]
        out = Path(out_dir) if out_dir is not None else root / "reports" / _slug(suite.name)
        report = Report(title=f"featspace report: {suite.name}", description=suite.description, source=suite.source,
                        notes=suite.notes, warnings=warnings)
        if overrides:
            report.warnings.insert(0, f"runs made with --set {' '.join(overrides)}")
    else:
        run_dirs = [suite_or_run_dirs] if isinstance(suite_or_run_dirs, (str, Path)) else list(suite_or_run_dirs)
        runs, suite, warnings = _dir_runs(run_dirs)
        layout = Layout({a.name: [c.label for c in a.choices] for a in suite.axes},
                        [ls for run in runs for ls in run.label_sets])
        metrics = [m for m in DEFAULT_METRICS if any(m["key"] in run.metrics for run in runs)]
        axes = [a.name for a in suite.axes] or ["head"]
        table_specs = [parse_table({"title": "Runs", "rows": axes, "metrics": metrics or DEFAULT_METRICS[:1]},
                                   layout)] if runs else []
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(out_dir) if out_dir is not None else root / "reports" / f"runs-{stamp}"
        report = Report(title="featspace report: runs", description=f"{len(runs)} run directories",
                        warnings=warnings)
        suite.figures = [{"title": "Figures of each run (lowest seed)", "plots": ["embeddings.png", "angles.png"]}]
    report.runs = runs
    report.axes = [a.name for a in suite.axes]
    report.environment = environment(runs)
    report.tables = [build_table(spec, layout, runs) for spec in table_specs]
    figures_dir = out / "figures"
    for k, spec in enumerate(suite.heatmaps):
        path = _heatmap(spec, runs, layout, figures_dir / f"heatmap-{k + 1}-{_slug(str(spec.get('metric')))}.png")
        if path is not None:
            report.sections.append(FigureSection(str(spec.get("title", "Heatmap")), [Figure(path, str(
                spec.get("name", spec.get("metric"))) + " per configuration, mean over seeds")]))
    for k, spec in enumerate(suite.scatters):
        path = _scatter(spec, runs, layout, figures_dir / f"scatter-{k + 1}-{_slug(str(spec.get('y')))}.png")
        if path is not None:
            report.sections.append(FigureSection(str(spec.get("title", "Scatter")), [Figure(
                path, "one point per configuration, mean over seeds")]))
    for spec in suite.figures:
        section = _run_figures(spec, runs, out, max_figures)
        if section.figures:
            report.sections.append(section)
    return report, out


def report_to_markdown(report: Report, out_dir: Path) -> str:
    """The report as Markdown, figures linked relative to ``out_dir``."""
    from featspace.report.tables import _md_escape

    lines = [f"# {_md_escape(report.title)}", ""]
    if report.description:
        lines += [_md_escape(report.description), ""]
    if report.source:
        lines += [f"Source: {_md_escape(report.source)}", ""]
    lines += ["| | |", "| --- | --- |"]
    lines += [f"| {_md_escape(k)} | {_md_escape(v)} |" for k, v in report.environment.items()]
    lines += [f"| finished runs | {len(report.runs)} |", ""]
    if report.notes:
        lines += [_md_escape(report.notes), ""]
    for warning in report.warnings:
        lines += [f"> **Note:** {_md_escape(warning)}", ""]
    for table in report.tables:
        lines += [table_to_markdown(table), ""]
    for section in report.sections:
        lines += [f"### {_md_escape(section.title)}", ""]
        for figure in section.figures:
            rel = figure.path.relative_to(out_dir).as_posix()
            lines += [f"![{_md_escape(figure.caption)}]({rel})", "", f"*{_md_escape(figure.caption)}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def build_report(suite_or_run_dirs: str | Path | Suite | Sequence[str | Path], *, root: str | Path = DEFAULT_ROOT,
                 out_dir: str | Path | None = None, overrides: Sequence[str] = (), max_figures: int = 24,
                 ) -> ReportPaths:
    """Write the report of a suite (a shipped name, a YAML path, a :class:`Suite`) or of run directories.

    root: the run root whose index is read (suite mode). out_dir: default ``<root>/reports/<suite>/``
    (``<root>/reports/runs-<time>/`` for run directories). overrides: the ``--set`` strings the bench was run
    with, so the report reads the same cells. Writes report.md, report.html (self-contained: images embedded),
    results.csv (every table cell), runs.csv (every run) and figures/*.png; returns their paths.
    """
    from featspace.report.html import report_to_html

    report, out = collect_report(suite_or_run_dirs, root=root, out_dir=out_dir, overrides=overrides,
                                 max_figures=max_figures)
    out.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(out_dir=out, markdown=out / "report.md", html=out / "report.html", csv=out / "results.csv",
                        runs_csv=out / "runs.csv",
                        figures=[f.path for s in report.sections for f in s.figures])
    write_text(paths.markdown, report_to_markdown(report, out))
    write_text(paths.html, report_to_html(report))
    write_text(paths.csv, tables_to_csv(report.tables))
    write_text(paths.runs_csv, runs_to_csv(report.runs, report.axes))
    return paths
