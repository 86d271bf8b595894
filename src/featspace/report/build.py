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
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featspace.config import NON_RESULT_FIELDS, cell_hash, flatten, label_text
from featspace.io import atomic_path, write_text
from featspace.report import charts
from featspace.report.html import report_to_html
from featspace.report.model import Figure, FigureSection, Report, ReportPaths, environment
from featspace.report.tables import (
    Run,
    build_table,
    md_escape,
    parse_table,
    parse_where,
    runs_to_csv,
    table_to_markdown,
    tables_to_csv,
    where_matches,
)
from featspace.rundir import DEFAULT_ROOT, INDEX_FILE, RunDir, RunIndex
from featspace.suite import Layout, Suite, load_suite

__all__ = ["DEFAULT_METRICS", "build_report", "collect_report", "report_to_markdown"]

#: the metrics of a report on run directories that name no suite
DEFAULT_METRICS = [
    {"key": "accuracy", "name": "accuracy (%)", "scale": 100, "format": ".2f"},
    {"key": "ncc_accuracy", "name": "NCC acc. (%)", "scale": 100, "format": ".2f"},
    {"key": "precision_at_1", "name": "P@1 (%)", "scale": 100, "format": ".2f"},
    {"key": "mean_average_precision_at_r", "name": "MAP@R (%)", "scale": 100, "format": ".2f"},
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


# ----------------------------------------------------------------------------------------- gathering
def _suite_runs(suite: Suite, root: Path, overrides: Sequence[str]) -> tuple[list[Run], Layout, list[str]]:
    """The latest finished run of every cell of the suite in the index under ``root``, in the suite's cell order
    (not the order they finished in: a cell retrained later keeps its place among the figures)."""
    layout = suite.layout(overrides)
    if not RunIndex.exists(root):
        return [], layout, [f"no run index at {root / INDEX_FILE}: run `featspace bench {suite.name}` first"]
    latest: dict[str, Any] = {}
    for record in RunIndex(root).query(suite=suite.name, status="finished"):
        latest[record.cell or record.id] = record  # oldest first: the last one wins if a cell finished twice
    runs: list[Run] = []
    unmatched = 0
    for key, record in latest.items():
        match = _CELL_SEED.match(key)
        group = match.group("group") if match else key
        if group not in layout.groups:
            unmatched += 1
            continue
        runs.append(Run(id=record.id, group=group, seed=record.seed, label_sets=layout.groups[group],
                        config=record.config, metrics=record.metrics, path=record.path,
                        code_version=record.code_version))
    order = {group: k for k, group in enumerate(layout.groups)}
    runs.sort(key=lambda run: (order[run.group], run.seed if run.seed is not None else 0))
    warnings = []
    if unmatched:
        warnings.append(f"{unmatched} finished run(s) of suite {suite.name} under {root} belong to no cell of the "
                        "suite as defined now (another --set, or an edited suite or recipe) and are left out")
    return runs, layout, warnings


def _finished(rundir: RunDir) -> tuple[bool, str]:
    """Whether a run directory holds a finished run: its index row says so where there is an index beside it
    (a metrics.json alone may come from ``featspace eval`` of an interrupted run), else its metrics.json."""
    if rundir.read_metrics() is None:
        return False, "has no metrics.json (not finished)"
    if RunIndex.exists(rundir.path.parent):
        record = RunIndex(rundir.path.parent).get(rundir.name)
        if record is not None and record.status != "finished":
            return False, f"is {record.status} in its index"
    return True, ""


def _dir_runs(run_dirs: Sequence[str | Path]) -> tuple[list[Run], Layout, list[str]]:
    """Runs read from their directories, with axes = the config keys that vary between them."""
    warnings: list[str] = []
    loaded = []
    for run_dir in run_dirs:
        rundir = RunDir(run_dir)
        config = rundir.read_config_values()
        finished, why = _finished(rundir)
        if not finished:
            warnings.append(f"{rundir.path} {why}; left out")
            continue
        loaded.append((rundir, config, rundir.read_metrics() or {}))
    flats = [flatten(c) for _, c, _ in loaded]
    keys: list[str] = []
    for flat in flats:
        keys.extend(k for k in flat if k not in keys)
    varying = [k for k in keys if k != "seed" and k not in NON_RESULT_FIELDS
               and len({repr(f.get(k)) for f in flats}) > 1]
    if "head" in keys and "head" not in varying:
        varying.insert(0, "head")
    runs = []
    for (rundir, config, metrics), flat in zip(loaded, flats):
        labels = {key: label_text(flat.get(key)) for key in varying}
        runs.append(Run(id=rundir.name, group=cell_hash(config), seed=config.get("seed"), label_sets=[labels],
                        config=config, metrics=metrics, path=str(rundir.path)))
    axis_labels = {key: list(dict.fromkeys(run.label_sets[0][key] for run in runs)) for key in varying}
    groups: dict[str, list[dict[str, str]]] = {}
    for run in runs:
        groups.setdefault(run.group, run.label_sets)
    layout = Layout(axis_labels, [run.label_sets[0] for run in runs], groups=groups)
    return runs, layout, warnings


# -------------------------------------------------------------------------------------------- figures
def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")
    return slug[:80] or "x"


def _is_png(path: Path) -> bool:
    """A regular file (not a link: reports copy from other people's run folders) with the PNG signature."""
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89PNG\r\n\x1a\n"


def _run_figures(spec: dict[str, Any], runs: list[Run], out_dir: Path, max_figures: int) -> FigureSection:
    section = FigureSection(str(spec.get("title", "Figures")))
    representative: dict[str, Run] = {}
    where = parse_where(spec.get("where"), f"figures {section.title!r}")
    for run in runs:  # the lowest seed of each configuration that passes `where`
        if not any(where_matches(ls, where) for ls in run.label_sets):
            continue
        best = representative.get(run.group)
        if best is None or (run.seed if run.seed is not None else 0) < (best.seed if best.seed is not None else 0):
            representative[run.group] = run
    for run in list(representative.values())[:max_figures]:
        labels = next((ls for ls in run.label_sets if where_matches(ls, where)), run.label_sets[0])
        caption = ", ".join(f"{v}" for v in labels.values()) + f" (seed {run.seed}, run {run.id})"
        for plot in spec.get("plots", []):
            source = RunDir(run.path).plots / str(plot)
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
        return not RunDir(value).is_run()
    return False


def _add_charts(report: Report, heatmaps: list[dict[str, Any]], scatters: list[dict[str, Any]], runs: list[Run],
                layout: Layout, figures_dir: Path) -> None:
    for k, spec in enumerate(heatmaps):
        path = charts.heatmap(spec, runs, layout, figures_dir / f"heatmap-{k + 1}-{_slug(str(spec.get('metric')))}.png")
        if path is not None:
            report.sections.append(FigureSection(str(spec.get("title", "Heatmap")), [Figure(path, str(
                spec.get("name", spec.get("metric"))) + " per configuration, mean over seeds")]))
    for k, spec in enumerate(scatters):
        path = charts.scatter(spec, runs, layout, figures_dir / f"scatter-{k + 1}-{_slug(str(spec.get('y')))}.png")
        if path is not None:
            report.sections.append(FigureSection(str(spec.get("title", "Scatter")), [Figure(
                path, "one point per configuration, mean over seeds")]))


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
        heatmaps, scatters, figure_specs = suite.heatmaps, suite.scatters, suite.figures
    else:
        run_dirs = [suite_or_run_dirs] if isinstance(suite_or_run_dirs, (str, Path)) else list(suite_or_run_dirs)
        runs, layout, warnings = _dir_runs(run_dirs)
        metrics = [m for m in DEFAULT_METRICS if any(m["key"] in run.metrics for run in runs)]
        axes = list(layout.axis_labels) or ["head"]
        table_specs = [parse_table({"title": "Runs", "rows": axes, "metrics": metrics or DEFAULT_METRICS[:1]},
                                   layout)] if runs else []
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(out_dir) if out_dir is not None else root / "reports" / f"runs-{stamp}"
        report = Report(title="featspace report: runs", description=f"{len(runs)} run directories",
                        warnings=warnings)
        heatmaps, scatters = [], []
        figure_specs = [{"title": "Figures of each run (lowest seed)", "plots": ["embeddings.png", "angles.png"]}]
    report.runs = runs
    report.axes = list(layout.axis_labels)
    report.environment = environment(runs)
    report.tables = [build_table(spec, layout, runs) for spec in table_specs]
    _add_charts(report, heatmaps, scatters, runs, layout, out / "figures")
    for spec in figure_specs:
        section = _run_figures(spec, runs, out, max_figures)
        if section.figures:
            report.sections.append(section)
    return report, out


def report_to_markdown(report: Report, out_dir: Path) -> str:
    """The report as Markdown, figures linked relative to ``out_dir``."""
    lines = [f"# {md_escape(report.title)}", ""]
    if report.description:
        lines += [md_escape(report.description), ""]
    if report.source:
        lines += [f"Source: {md_escape(report.source)}", ""]
    lines += ["| | |", "| --- | --- |"]
    lines += [f"| {md_escape(k)} | {md_escape(v)} |" for k, v in report.environment.items()]
    lines += [f"| finished runs | {len(report.runs)} |", ""]
    if report.notes:
        lines += [md_escape(report.notes), ""]
    for warning in report.warnings:
        lines += [f"> **Note:** {md_escape(warning)}", ""]
    for table in report.tables:
        lines += [table_to_markdown(table), ""]
    for section in report.sections:
        lines += [f"### {md_escape(section.title)}", ""]
        for figure in section.figures:
            rel = figure.path.relative_to(out_dir).as_posix()
            lines += [f"![{md_escape(figure.caption)}]({rel})", "", f"*{md_escape(figure.caption)}*", ""]
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
