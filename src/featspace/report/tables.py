"""Comparison tables: runs aggregated into mean ± std over seeds, in the layout of a paper's table.

A table is described in a suite file (``featspace/suites/*.yaml``, see ``featspace.suite``)::

    tables:
      - title: "Table 1: nearest centroid"
        rows: [head]                                  # axes whose labels form the rows
        columns: [head_params.normalize, embedding_dim]   # axes whose labels form the columns (optional)
        where: {head: ["ICV λ=1.0", "ICV λ=0.5"]}     # keep only these labels (a list of such mappings: any)
        corner: "σ \\ m"                              # the top-left header (default: row axes \\ column axes)
        metrics:
          - key: ncc_accuracy                         # a key of metrics.json (featspace.metrics.evaluate)
            name: "NCC accuracy"                      # its display name (default: the key)
            format: ".3f"                             # Python format spec of the displayed numbers
            scale: 1                                  # multiply before display (100 for percent)
            higher_is_better: true                    # which end is bold
            key_when: [{where: {head_params.normalize: true}, key: ncc_accuracy_cosine}]
            ci_key: null                              # a per-run 95% CI half-width (few-shot episodes)
        paper:
          source: "001 Table 1"
          rows: {"Cross entropy": [0.746, 0.869, "0.814 ± 0.01", null]}
        reference: "Cross entropy"                    # the row the others are compared with (default: a row
                                                      # labelled softmax, else the one softmax-head row; null: none)
        select: {axes: [head_params.margin], by: best_val_loss, higher_is_better: false}   # optional, see below

A run (one cell of the matrix: a configuration and a seed) belongs to a table when every axis of its cell is one
of the table's rows, columns or ``where`` keys and its labels pass ``where``; so a table whose rows are the
heads does not silently pool the runs of a width sweep that also varies the embedding. ``key_when`` picks
another metric key for the runs whose config matches (first match wins): the paper's "Norm." columns are
measured in the normalised space, which is ``ncc_accuracy_cosine``, not ``ncc_accuracy``.

The paper's numbers are given per row (the row's labels joined with " / "), one entry per column combination
and metric, column combinations outermost, in the units the table displays (after ``scale``); a number, a
``"mean ± std"`` string, or null. A paper column appears beside each of our columns that has a paper number.

Cells show mean ± sample std (ddof = 1) over the runs of a cell, with the count n (in the caption when every
cell has the same n). A metric with a ``ci_key`` (``fewshot_ncc_1shot_ci95`` beside ``fewshot_ncc_1shot``: the
half-width of the 95% confidence interval of one run's episode mean) shows, in a cell of a single run, that
interval instead of the missing std; a cell of several runs keeps the std over seeds (the spread that matters
once there are seeds), and results.csv has the mean CI of every cell in its ``ci95`` column.

Statistics (``featspace.report.stats``): every cell of ours has its 95% Student's t interval over seeds, and every
row its paired difference from the reference row in the same column, over the seeds both have (the same seed gives
the same initialisation and data order), with its 95% t interval and the paired t-test's p-value Holm-corrected
across the rows of the column; the Markdown and HTML show them in a table under each table, results.csv in columns.
In a column of ours, **bold** marks the best mean and every row not significantly worse than it (paired over shared
seeds, Holm-corrected, α = 0.05), so a winner by a hair shares the mark; with fewer than 3 shared seeds nothing is
marked and the caption says that no difference can be called. Paper columns, which have no seeds, keep the papers'
own marking: the best bold and the second underlined, ties at the displayed precision sharing a rank.

``select`` picks, per cell, the setting of some axes (a λ, a margin, a (σ, m) pair) whose runs have the best mean
of a validation metric (``by``: ``best_val_loss`` by default direction lower-is-better), as a paper that tunes
on validation does; the cell shows that setting's test metrics and, in brackets, the setting. A cell whose runs
have no such metric (a recipe without a validation split) is left empty rather than picked on the test numbers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featspace.config import as_list, config_value, label_text
from featspace.report import stats
from featspace.suite import Layout

__all__ = [
    "MetricSpec",
    "PaperSpec",
    "TableSpec",
    "Stat",
    "Comparison",
    "TableColumn",
    "Table",
    "Run",
    "md_escape",
    "parse_table",
    "parse_where",
    "parse_paper_value",
    "build_table",
    "csv_text",
    "rank_column",
    "format_stat",
    "table_to_markdown",
    "tables_to_csv",
    "statistics_rows",
    "CSV_COLUMNS",
    "runs_to_csv",
    "where_matches",
]

_TABLE_KEYS = {"title", "rows", "columns", "where", "metrics", "paper", "corner", "note", "reference", "select"}
_SELECT_KEYS = {"axes", "by", "higher_is_better"}
_METRIC_KEYS = {"key", "name", "format", "scale", "higher_is_better", "key_when", "ci_key"}


@dataclass(frozen=True)
class MetricSpec:
    key: str
    name: str
    format: str = ".3f"
    scale: float = 1.0
    higher_is_better: bool = True
    key_when: tuple[tuple[tuple[tuple[str, Any], ...], str], ...] = ()
    ci_key: str | None = None

    def key_for(self, config: dict[str, Any]) -> str:
        """The metric key to read for a run with this config (``key_when``'s first match, else ``key``)."""
        for conditions, key in self.key_when:
            if all(_same(config_value(config, k), v) for k, v in conditions):
                return key
        return self.key

    def fmt(self, value: float) -> str:
        return format(value, self.format)


@dataclass(frozen=True)
class Stat:
    """A cell: mean and sample std of ``n`` values (std NaN for n < 2); ``n`` None for a published number.
    ``ci``: the mean over the runs of their own 95% CI half-widths (a metric with a ``ci_key``), else NaN.
    ``ci_low``/``ci_high``: the 95% Student's t interval of the mean over the runs (NaN for n < 2).
    ``seeds``: (seed, value) of each run, for paired comparisons (empty when the runs' seeds are unknown or
    repeat, e.g. a cell that pools two configurations)."""

    mean: float
    std: float = math.nan
    n: int | None = None
    ci: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    seeds: tuple[tuple[int, float], ...] = ()
    #: in a table with ``select``: the labels of the setting picked for this cell (on validation)
    picked: str = ""


@dataclass(frozen=True)
class Comparison:
    """A cell of ours against the table's reference row in the same column, paired over their shared seeds
    (``featspace.report.stats.paired_difference``): ``diff`` = this row − the reference, in displayed units;
    ``p_holm``: the paired t-test's p-value Holm-corrected across the rows of the column."""

    reference: str
    n: int
    diff: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float = math.nan


@dataclass
class PaperSpec:
    source: str
    rows: dict[str, list[Stat | None]]


@dataclass
class TableSpec:
    title: str
    rows: list[str]
    columns: list[str]
    metrics: list[MetricSpec]
    where: list[dict[str, list[str | None]]] = field(default_factory=list)
    paper: PaperSpec | None = None
    corner: str | None = None
    note: str = ""
    #: the row the others are compared with (its name: labels joined " / "); None: the default (a row labelled
    #: softmax, else the one row whose runs all train the softmax head); "" (``reference: null``): none
    reference: str | None = None
    #: ``select``: axes whose setting each cell picks by the best mean of a validation metric (``select_by``)
    select: list[str] = field(default_factory=list)
    select_by: str = ""
    select_higher_is_better: bool = False


@dataclass
class TableColumn:
    """One column: the labels of the column axes (possibly empty), its metric, and whose numbers it holds."""

    labels: tuple[str, ...]
    metric: MetricSpec
    source: str  # "ours" | "paper"

    def header(self, *, with_metric: bool) -> str:
        parts = [*self.labels]
        if with_metric or not parts:
            parts.append(self.metric.name)
        text = " ".join(parts)
        return f"{text} (paper)" if self.source == "paper" else text


@dataclass
class Table:
    """A table ready to render: ``cells[row][column]`` and ``ranks[row][column]`` (1 best, 2 second)."""

    title: str
    corner: str
    row_labels: list[tuple[str, ...]]
    columns: list[TableColumn]
    cells: list[list[Stat | None]]
    ranks: list[list[int | None]]
    caption: str = ""
    paper_source: str = ""
    note: str = ""
    #: the reference row's name ("" when the table has none) and each cell's comparison with it
    reference: str = ""
    comparisons: list[list[Comparison | None]] = field(default_factory=list)

    @property
    def multi_metric(self) -> bool:
        return len({c.metric.key for c in self.columns}) > 1

    def row_name(self, row: int) -> str:
        return " / ".join(label for label in self.row_labels[row] if label)

    def uniform_n(self) -> int | None:
        ns = {s.n for r in self.cells for s, c in zip(r, self.columns) if s is not None and c.source == "ours"}
        return ns.pop() if len(ns) == 1 else None

    def text(self, row: int, col: int) -> str:
        stat = self.cells[row][col]
        return format_stat(stat, self.columns[col].metric, show_n=self.uniform_n() is None)


@dataclass
class Run:
    """What a table needs of a finished run: its cell labels, config and metrics."""

    id: str
    group: str
    seed: int | None
    label_sets: list[dict[str, str]]
    config: dict[str, Any]
    metrics: dict[str, Any]
    path: str = ""
    code_version: str | None = None


# ----------------------------------------------------------------------------------------------- parsing
def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted or value == wanted and type(value) is type(wanted)
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)):
        return math.isclose(float(value), float(wanted), rel_tol=1e-12, abs_tol=0.0)
    return value == wanted


_PLUS_MINUS = re.compile(r"^\s*([-+0-9.eE]+)\s*(?:±|\+-|\+/-)\s*([-+0-9.eE]+)\s*$")


def parse_paper_value(value: Any) -> Stat | None:
    """A published number: a number, a ``"mean ± std"`` string, or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"a paper value must be a number or 'mean ± std', got {value!r}")
    if isinstance(value, (int, float)):
        return Stat(float(value))
    text = str(value)
    match = _PLUS_MINUS.match(text)
    try:
        if match:
            return Stat(float(match.group(1)), float(match.group(2)))
        return Stat(float(text))
    except ValueError:
        raise ValueError(f"a paper value must be a number or 'mean ± std', got {value!r}") from None


def _label_text(value: Any) -> str | None:
    return None if value is None else label_text(value)


def parse_where(raw: Any, owner: str) -> list[dict[str, list[str | None]]]:
    """A ``where`` field (a mapping of axis -> label or labels, or a list of such mappings: any of them) as a
    list of clauses of label lists; ``owner`` names the table or figure entry in errors."""
    clauses = raw if isinstance(raw, list) else ([raw] if raw else [])
    out = []
    for clause in clauses:
        if not isinstance(clause, dict):
            raise ValueError(f"{owner}: 'where' must be a mapping (or a list of mappings) of axis -> labels")
        out.append({str(k): [_label_text(v) for v in as_list(v)] if v is not None else [None]
                    for k, v in clause.items()})
    return out


def _parse_metric(raw: Any, title: str) -> MetricSpec:
    if isinstance(raw, str):
        raw = {"key": raw}
    if not isinstance(raw, dict) or "key" not in raw:
        raise ValueError(f"table {title!r}: each metric needs a 'key'")
    unknown = sorted(set(raw) - _METRIC_KEYS)
    if unknown:
        raise ValueError(f"table {title!r}: unknown metric field(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(_METRIC_KEYS))}")
    key_when = []
    for rule in as_list(raw.get("key_when")):
        if not isinstance(rule, dict) or "key" not in rule or not isinstance(rule.get("where"), dict):
            raise ValueError(f"table {title!r}: key_when entries look like {{where: {{config_key: value}}, key: k}}")
        key_when.append((tuple(rule["where"].items()), str(rule["key"])))
    spec = MetricSpec(key=str(raw["key"]), name=str(raw.get("name") or raw["key"]),
                      format=str(raw.get("format", ".3f")), scale=float(raw.get("scale", 1.0)),
                      higher_is_better=bool(raw.get("higher_is_better", True)), key_when=tuple(key_when),
                      ci_key=str(raw["ci_key"]) if raw.get("ci_key") else None)
    try:
        spec.fmt(1.0)
    except ValueError:
        raise ValueError(f"table {title!r}: bad format {spec.format!r} for metric {spec.key}") from None
    return spec


def parse_table(raw: dict[str, Any], layout: Layout | None = None) -> TableSpec:
    """A :class:`TableSpec` from a suite's table mapping; checks axes and the paper's row lengths."""
    title = str(raw.get("title") or "table")
    unknown = sorted(set(raw) - _TABLE_KEYS)
    if unknown:
        raise ValueError(f"table {title!r}: unknown field(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(_TABLE_KEYS))}")
    metrics = [_parse_metric(m, title) for m in as_list(raw.get("metrics"))]
    if not metrics:
        raise ValueError(f"table {title!r}: needs at least one metric")
    spec = TableSpec(title=title, rows=[str(a) for a in as_list(raw.get("rows"))],
                     columns=[str(a) for a in as_list(raw.get("columns"))], metrics=metrics,
                     where=parse_where(raw.get("where"), f"table {title!r}"), corner=raw.get("corner"),
                     note=str(raw.get("note") or ""))
    if "reference" in raw:
        reference = raw["reference"]
        if reference is not None and not isinstance(reference, str):
            raise ValueError(f"table {title!r}: 'reference' must be a row name (labels joined ' / ') or null")
        spec.reference = reference or ""
    if not spec.rows:
        raise ValueError(f"table {title!r}: needs 'rows' (one or more axes)")
    if raw.get("select") is not None:
        select = raw["select"]
        if not isinstance(select, dict) or not select.get("axes") or not select.get("by"):
            raise ValueError(f"table {title!r}: 'select' looks like {{axes: [axis, ...], by: best_val_loss, "
                             f"higher_is_better: false}}")
        unknown = sorted(set(select) - _SELECT_KEYS)
        if unknown:
            raise ValueError(f"table {title!r}: unknown select field(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(_SELECT_KEYS))}")
        spec.select = [str(a) for a in as_list(select["axes"])]
        spec.select_by = str(select["by"])
        spec.select_higher_is_better = bool(select.get("higher_is_better", False))
        clash = [a for a in spec.select if a in spec.rows or a in spec.columns]
        if clash:
            raise ValueError(f"table {title!r}: select axis {clash[0]!r} is also a row or column axis")
    if layout is not None:
        axes = set(layout.axis_labels)
        for name in [*spec.rows, *spec.columns, *spec.select, *(k for clause in spec.where for k in clause)]:
            if name not in axes:
                raise ValueError(f"table {title!r}: unknown axis {name!r}; axes: {', '.join(sorted(axes))}")
    paper = raw.get("paper")
    if paper is not None:
        if not isinstance(paper, dict) or not isinstance(paper.get("rows"), dict):
            raise ValueError(f"table {title!r}: 'paper' needs 'source' and a 'rows' mapping")
        width = len(metrics) * (len(_col_keys(spec, layout)) if layout is not None else 0)
        rows = {}
        for label, values in paper["rows"].items():
            values = as_list(values)
            if layout is not None and len(values) != width:
                raise ValueError(f"table {title!r}: paper row {label!r} has {len(values)} values, the table has "
                                 f"{width} (column combinations x metrics)")
            rows[str(label)] = [parse_paper_value(v) for v in values]
        spec.paper = PaperSpec(source=str(paper.get("source") or ""), rows=rows)
        if layout is not None:
            known = {" / ".join(x for x in r if x) for r in _row_keys(spec, layout)}
            missing = sorted(set(rows) - known)
            if missing:
                raise ValueError(f"table {title!r}: paper row {missing[0]!r} is not a row of the table; rows: "
                                 f"{', '.join(sorted(known))}")
    if spec.reference and layout is not None:
        known = [" / ".join(x for x in r if x) for r in _row_keys(spec, layout)]
        if spec.reference not in known:
            raise ValueError(f"table {title!r}: reference {spec.reference!r} is not a row of the table; rows: "
                             f"{', '.join(known)}")
    return spec


# ----------------------------------------------------------------------------------------- aggregation
def where_matches(labels: dict[str, str], where: list[dict[str, list[str | None]]]) -> bool:
    """Whether a cell's labels pass a parsed ``where`` (:func:`parse_where`): any clause whose axes all carry one
    of its labels; an empty ``where`` passes everything."""
    return not where or any(all(labels.get(axis) in wanted for axis, wanted in clause.items()) for clause in where)


def _matches(labels: dict[str, str], spec: TableSpec) -> bool:
    allowed_axes = set(spec.rows) | set(spec.columns) | set(spec.select) | {k for clause in spec.where for k in clause}
    return set(labels) <= allowed_axes and where_matches(labels, spec.where)


def _axis_order(layout: Layout, axis: str, label: str | None) -> int:
    labels = layout.axis_labels.get(axis, [])
    return labels.index(label) if label in labels else -1


def _key(labels: dict[str, str], axes: list[str]) -> tuple[str, ...]:
    return tuple(labels.get(a, "") for a in axes)


def _placement(label_sets: list[dict[str, str]], spec: TableSpec) -> dict[str, str] | None:
    """Where a configuration sits in a table: the first of its label sets that the table takes and that labels
    every row and column axis, else the first the table takes (None: not in the table). A configuration in two
    blocks (POD at the recipe's width in a loss block and in a width sweep) then sits at its width, not in a row
    without a label."""
    taken = [labels for labels in label_sets if _matches(labels, spec)]
    full = [labels for labels in taken if all(a in labels for a in [*spec.rows, *spec.columns])]
    return (full or taken or [None])[0]


def _ordered_keys(spec: TableSpec, layout: Layout, axes: list[str]) -> list[tuple[str, ...]]:
    if layout.groups:
        placed = [_placement(sets, spec) for sets in layout.groups.values()]
        keys = {_key(ls, axes) for ls in placed if ls is not None}
    else:
        keys = {_key(ls, axes) for ls in layout.label_sets if _matches(ls, spec)}
    return sorted(keys, key=lambda k: [_axis_order(layout, a, v) for a, v in zip(axes, k)])


def _row_keys(spec: TableSpec, layout: Layout) -> list[tuple[str, ...]]:
    return _ordered_keys(spec, layout, spec.rows)


def _col_keys(spec: TableSpec, layout: Layout) -> list[tuple[str, ...]]:
    return _ordered_keys(spec, layout, spec.columns)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _stat(values: list[float], seeds: list[int | None] | None = None) -> Stat | None:
    """Mean, std, n and the t interval of a cell's values; ``seeds`` (one per value) keep the per-seed values
    for pairing when they are known and distinct."""
    if not values:
        return None
    summary = stats.summarize(values)
    paired: tuple[tuple[int, float], ...] = ()
    if seeds is not None and None not in seeds and len(set(seeds)) == len(seeds):
        paired = tuple(sorted((int(seed), value) for seed, value in zip(seeds, values)))  # type: ignore[arg-type]
    return Stat(summary.mean, summary.std, summary.n, ci_low=summary.ci_low, ci_high=summary.ci_high, seeds=paired)


def rank_column(stats: list[Stat | None], metric: MetricSpec) -> list[int | None]:
    """1 for the best mean(s), 2 for the second best, None otherwise; ties at the displayed precision."""
    shown = [None if s is None else float(metric.fmt(s.mean)) for s in stats]
    distinct = sorted({v for v in shown if v is not None}, reverse=metric.higher_is_better)
    if len([v for v in shown if v is not None]) < 2:
        return [None] * len(stats)
    ranks: list[int | None] = []
    for value in shown:
        if value is None:
            ranks.append(None)
        elif value == distinct[0]:
            ranks.append(1)
        elif len(distinct) > 1 and value == distinct[1]:
            ranks.append(2)
        else:
            ranks.append(None)
    return ranks


def build_table(spec: TableSpec, layout: Layout, runs: list[Run]) -> Table:
    """Aggregate the runs into the table's layout (mean ± std over each cell's runs) and rank each column."""
    row_keys = _row_keys(spec, layout)
    col_keys = _col_keys(spec, layout)
    # (row, column key) -> runs; a run can sit in one place per table even with several label sets
    placed: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Run]] = {}
    groups_at: dict[tuple[tuple[str, ...], tuple[str, ...]], set[str]] = {}
    for run in runs:
        labels = _placement(run.label_sets, spec)
        if labels is not None:
            where = (_key(labels, spec.rows), _key(labels, spec.columns))
            placed.setdefault(where, []).append(run)
            groups_at.setdefault(where, set()).add(run.group)
    picked: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    unpicked = 0
    if spec.select:
        placed, picked, unpicked = _select(spec, placed)
        groups_at = {where: {run.group for run in found} for where, found in placed.items()}
    columns: list[TableColumn] = []
    paper_rows = spec.paper.rows if spec.paper else {}
    for c, col_key in enumerate(col_keys):
        for m, metric in enumerate(spec.metrics):
            columns.append(TableColumn(col_key, metric, "ours"))
            position = c * len(spec.metrics) + m
            if any(position < len(v) and v[position] is not None for v in paper_rows.values()):
                columns.append(TableColumn(col_key, metric, "paper"))
    cells: list[list[Stat | None]] = []
    for row_key in row_keys:
        row: list[Stat | None] = []
        for column in columns:
            if column.source == "paper":
                values = paper_rows.get(" / ".join(x for x in row_key if x), [])
                position = col_keys.index(column.labels) * len(spec.metrics) + spec.metrics.index(column.metric)
                row.append(values[position] if position < len(values) else None)
                continue
            found: list[float] = []
            seeds: list[int | None] = []
            intervals = []
            for run in placed.get((row_key, column.labels), []):
                value = _finite(run.metrics.get(column.metric.key_for(run.config)))
                if value is not None:
                    found.append(value * column.metric.scale)
                    seeds.append(run.seed)
                    interval = _finite(run.metrics.get(column.metric.ci_key)) if column.metric.ci_key else None
                    if interval is not None:
                        intervals.append(interval * column.metric.scale)
            stat = _stat(found, seeds)
            if stat is not None and intervals and len(intervals) == len(found):
                stat = dataclasses.replace(stat, ci=math.fsum(intervals) / len(intervals))
            if stat is not None and (row_key, column.labels) in picked:
                stat = dataclasses.replace(stat, picked=picked[(row_key, column.labels)])
            row.append(stat)
        cells.append(row)
    names = [" / ".join(x for x in key if x) for key in row_keys]
    reference = _reference_row(spec, names, row_keys, placed)
    ranks: list[list[int | None]] = [[None] * len(columns) for _ in row_keys]
    comparisons: list[list[Comparison | None]] = [[None] * len(columns) for _ in row_keys]
    unmarked: set[str] = set()
    all_unmarked = True
    for c, column in enumerate(columns):
        stats_in_column = [cells[r][c] for r in range(len(row_keys))]
        if column.source == "paper":  # published numbers have no seeds: ranked as the papers mark them
            for r, rank in enumerate(rank_column(stats_in_column, column.metric)):
                ranks[r][c] = rank
            continue
        samples = [dict(s.seeds) if s is not None and s.seeds else None for s in stats_in_column]
        marks, why = stats.not_worse_than_best(samples, higher_is_better=column.metric.higher_is_better)
        if why and sum(s is not None for s in stats_in_column) > 1:
            unmarked.add(why)
        if not why:
            all_unmarked = False
        for r, mark in enumerate(marks):
            ranks[r][c] = 1 if mark else None
        if reference is not None and samples[reference]:
            found_cmp = []
            for r, sample in enumerate(samples):
                if r != reference and sample:
                    paired = stats.paired_difference(sample, samples[reference])  # type: ignore[arg-type]
                    found_cmp.append((r, Comparison(names[reference], paired.n, paired.diff, paired.ci_low,
                                                    paired.ci_high, paired.p)))
            adjusted = stats.holm([cmp.p for _, cmp in found_cmp])
            for (r, cmp), p in zip(found_cmp, adjusted):
                comparisons[r][c] = dataclasses.replace(cmp, p_holm=p)
    pooled = [k for k, g in groups_at.items() if len(g) > 1]
    corner = " / ".join(layout.name(a) for a in spec.rows)
    if spec.columns:
        corner += " \\ " + " / ".join(layout.name(a) for a in spec.columns)
    table = Table(title=spec.title, corner=spec.corner if spec.corner is not None else corner,
                  row_labels=row_keys, columns=columns, cells=cells, ranks=ranks,
                  paper_source=spec.paper.source if spec.paper else "", note=spec.note,
                  reference=names[reference] if reference is not None else "", comparisons=comparisons)
    n = table.uniform_n()
    parts = []
    if not table.multi_metric:
        parts.append(spec.metrics[0].name)
    any_ours = any(s is not None for r in cells for s, c in zip(r, columns) if c.source == "ours")
    if any_ours:
        parts.append(f"mean ± std over n = {n} runs (seeds)" if n is not None and n > 1
                     else "one run per cell" if n == 1 else "mean ± std over the runs of each cell (n in brackets)")
    else:
        parts.append("no finished runs yet")
    with_ci = [s for r in cells for s, c in zip(r, columns) if c.source == "ours" and s is not None
               and not math.isnan(s.ci)]
    if any(s.n == 1 for s in with_ci):
        parts.append("± of a single run: the 95% confidence interval of its episodes" if n == 1 else
                     "± is the std over seeds, or for a cell of one run the 95% confidence interval of its episodes")
    if spec.paper:
        parts.append(f"paper: {spec.paper.source}")
    if spec.select:
        names_ = " / ".join(layout.name(a) for a in spec.select)
        parts.append(f"each cell of ours is the {names_} setting with the best mean {spec.select_by} over its seeds "
                     f"({'highest' if spec.select_higher_is_better else 'lowest'}; picked on validation, not on "
                     f"the test numbers shown), in brackets")
        if unpicked:
            parts.append(f"{unpicked} cells left empty: their runs have no {spec.select_by} to pick on")
    if any_ours:
        if any(ranks[r][c] == 1 for r in range(len(row_keys)) for c, col in enumerate(columns)
               if col.source == "ours"):
            parts.append(f"bold (ours): the best mean and every row not significantly worse than it (paired t-test "
                         f"over shared seeds, Holm-corrected, α = {stats.ALPHA})")
        for why in sorted(unmarked):
            parts.append(f"{why}, so nothing of ours is marked best" + (" in some columns" if len(columns) > 1
                                                                       and not all_unmarked else ""))
        if table.reference:
            parts.append(f"paired differences from {table.reference!r} in the statistics below")
    if spec.paper:
        parts.append("paper columns: bold best, underlined second, as printed")
    if pooled:
        parts.append(f"warning: {len(pooled)} cells pool runs of different configurations")
    table.caption = "; ".join(parts) + "."
    return table


def _select(spec: TableSpec, placed: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Run]],
            ) -> tuple[dict[tuple[tuple[str, ...], tuple[str, ...]], list[Run]],
                       dict[tuple[tuple[str, ...], tuple[str, ...]], str], int]:
    """Per table cell, keep only the runs of the setting of the ``select`` axes with the best mean of
    ``select_by`` (a validation metric) over its seeds; a cell whose runs lack it is left empty, never picked on
    the test metrics. Returns the kept runs, the picked labels per cell and the number of cells left empty."""
    kept: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Run]] = {}
    picked: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    empty = 0
    sign = 1.0 if spec.select_higher_is_better else -1.0
    for where, found in placed.items():
        candidates: dict[tuple[str, ...], list[Run]] = {}
        for run in found:
            labels = _placement(run.label_sets, spec) or {}
            candidates.setdefault(_key(labels, spec.select), []).append(run)
        scores = {}
        for setting, setting_runs in candidates.items():
            values = [v for v in (_finite(r.metrics.get(spec.select_by)) for r in setting_runs) if v is not None]
            if values:
                scores[setting] = sign * math.fsum(values) / len(values)
        if not scores:
            empty += 1
            continue
        best = max(scores, key=lambda k: scores[k])
        kept[where] = candidates[best]
        picked[where] = " / ".join(x for x in best if x)
    return kept, picked, empty


def _reference_row(spec: TableSpec, names: list[str], row_keys: list[tuple[str, ...]],
                   placed: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Run]]) -> int | None:
    """The index of the table's reference row: the one named by ``reference``; by default a row with a label
    "softmax" (any case), else the one row whose runs all train the ``softmax`` head; None when there is none."""
    if spec.reference == "":
        return None
    if spec.reference is not None:
        return names.index(spec.reference) if spec.reference in names else None
    for r, key in enumerate(row_keys):
        if any(label.lower() == "softmax" for label in key):
            return r
    softmax_rows = []
    for r, key in enumerate(row_keys):
        runs = [run for (row, _), found in placed.items() if row == key for run in found]
        if runs and all(run.config.get("head") == "softmax" for run in runs):
            softmax_rows.append(r)
    return softmax_rows[0] if len(softmax_rows) == 1 else None


def format_stat(stat: Stat | None, metric: MetricSpec, *, show_n: bool = False) -> str:
    """``0.871 ± 0.004`` (``(3)`` appended with show_n); ``-`` for a missing cell. The ± is the std over the
    runs, or for a single run with a CI (``Stat.ci``) that interval."""
    if stat is None:
        return "-"
    text = metric.fmt(stat.mean)
    if not math.isnan(stat.std):
        text += f" ± {metric.fmt(stat.std)}"
    elif stat.n == 1 and not math.isnan(stat.ci):
        text += f" ± {metric.fmt(stat.ci)}"
    if show_n and stat.n is not None:
        text += f" ({stat.n})"
    if stat.picked:
        text += f" [{stat.picked}]"
    return text


# -------------------------------------------------------------------------------------------- rendering
def md_escape(text: str) -> str:
    """Markdown table cell text: pipes and HTML-significant characters escaped (labels come from files)."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\n", " "))


def table_to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table: best **bold**, second <u>underlined</u>, caption below."""
    header = [md_escape(table.corner)] + [md_escape(c.header(with_metric=table.multi_metric))
                                           for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * len(table.columns)) + "|"]
    for r in range(len(table.row_labels)):
        cells = [md_escape(table.row_name(r))]
        for c in range(len(table.columns)):
            text = md_escape(table.text(r, c))
            if table.ranks[r][c] == 1:
                text = f"**{text}**"
            elif table.ranks[r][c] == 2:
                text = f"<u>{text}</u>"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    out = [f"### {md_escape(table.title)}", "", *lines, "", f"*{md_escape(table.caption)}*"]
    if table.note:
        out += ["", md_escape(table.note)]
    statistics = statistics_rows(table)
    if statistics is not None:
        header, body, caption = statistics
        out += ["", "| " + " | ".join(md_escape(h) for h in header) + " |",
                "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(md_escape(x) for x in row) + " |" for row in body]
        out += ["", f"*{md_escape(caption)}*"]
    return "\n".join(out) + "\n"


def _p_text(p: float) -> str:
    return "-" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def statistics_rows(table: Table) -> tuple[list[str], list[list[str]], str] | None:
    """The statistics under a table, as text: per row and column of ours, the 95% t interval of the mean and,
    with a reference row, the paired difference from it with its interval and the Holm-corrected p-value.
    None when there is nothing to add (no cell of more than one run and no comparison)."""
    ours = [c for c, column in enumerate(table.columns) if column.source == "ours"]
    has_ci = any(table.cells[r][c] is not None and (table.cells[r][c].n or 0) > 1
                 for r in range(len(table.row_labels)) for c in ours)
    has_cmp = any(table.comparisons and table.comparisons[r][c] is not None
                  for r in range(len(table.row_labels)) for c in ours)
    if not has_ci and not has_cmp:
        return None
    header = [table.corner]
    for c in ours:
        name = table.columns[c].header(with_metric=table.multi_metric)
        header.append(f"{name}: 95% CI")
        if table.reference:
            header.append(f"{name}: Δ vs {table.reference} [95% CI], p (Holm)")
    body = []
    for r in range(len(table.row_labels)):
        row = [table.row_name(r)]
        for c in ours:
            metric = table.columns[c].metric
            stat = table.cells[r][c]
            row.append("-" if stat is None or math.isnan(stat.ci_low) else
                       f"[{metric.fmt(stat.ci_low)}, {metric.fmt(stat.ci_high)}]")
            if table.reference:
                cmp = table.comparisons[r][c] if table.comparisons else None
                if table.row_name(r) == table.reference:
                    row.append("reference" if stat is not None else "-")
                elif cmp is None or cmp.n == 0:
                    row.append("-")
                elif math.isnan(cmp.p):
                    row.append(f"{format(cmp.diff, '+' + metric.format)} (n = {cmp.n}, no test)")
                else:
                    row.append(f"{format(cmp.diff, '+' + metric.format)} [{format(cmp.ci_low, '+' + metric.format)}, "
                               f"{format(cmp.ci_high, '+' + metric.format)}], p {_p_text(cmp.p_holm)} (n = {cmp.n})")
        body.append(row)
    caption = (f"Statistics of {table.title!r}: the 95% Student's t interval of each mean over its seeds"
               + (f"; Δ = row − {table.reference!r} paired over the seeds both have, its 95% t interval and the "
                  f"paired t-test's p-value (scipy.stats.ttest_rel), Holm-corrected across the rows of each column"
                  if table.reference else "; no reference row to compare with")
               + f"; fewer than {stats.MIN_SEEDS} seeds: the intervals are too wide to call any difference.")
    return header, body, caption


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: object) -> str:
    """A text cell for CSV that a spreadsheet shows as text: one starting with ``= + - @`` (or a tab or carriage
    return) would be run as a formula, so it gets a leading apostrophe, as OWASP advises. Numbers are written
    separately (``repr``), so a negative mean stays a number."""
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


CSV_COLUMNS = ["table", "row", "column", "metric", "metric_name", "source", "mean", "std", "n", "ci95", "ci_low",
               "ci_high", "best", "reference", "n_paired", "diff", "diff_ci_low", "diff_ci_high", "p", "p_holm",
               "picked"]


def _num(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else repr(float(value))


def tables_to_csv(tables: list[Table]) -> str:
    """Every cell of every table in long form (:data:`CSV_COLUMNS`): table, row, column, metric, source; mean,
    std (ddof = 1) and n over seeds; ci95, the mean of the runs' own 95% CI half-widths (metrics with a
    ``ci_key``); ci_low/ci_high, the 95% Student's t interval of the mean; best, 1 where the cell carries the
    bold mark (ours: not significantly worse than the best row; paper: its best); and against the table's
    reference row, paired over shared seeds: n_paired, diff (row − reference), diff_ci_low/high, p and p_holm;
    picked: in a table with ``select``, the setting picked on validation for the cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    # names, labels and titles come from suites and runs other people made: csv_text keeps them text
    for table in tables:
        for r in range(len(table.row_labels)):
            for c, column in enumerate(table.columns):
                stat = table.cells[r][c]
                if stat is None:
                    continue
                cmp = table.comparisons[r][c] if table.comparisons else None
                is_reference = column.source == "ours" and table.reference and table.row_name(r) == table.reference
                writer.writerow([*map(csv_text, (table.title, table.row_name(r),
                                                 " / ".join(x for x in column.labels if x), column.metric.key,
                                                 column.metric.name, column.source)), repr(stat.mean),
                                 _num(stat.std), "" if stat.n is None else stat.n, _num(stat.ci), _num(stat.ci_low),
                                 _num(stat.ci_high), 1 if table.ranks[r][c] == 1 else 0,
                                 csv_text(table.reference) if cmp is not None or is_reference else "",
                                 cmp.n if cmp is not None else "", *(
                                     (_num(cmp.diff), _num(cmp.ci_low), _num(cmp.ci_high), _num(cmp.p),
                                      _num(cmp.p_holm)) if cmp is not None else ("",) * 5),
                                 csv_text(stat.picked)])
    return buffer.getvalue()


def runs_to_csv(runs: list[Run], axes: list[str]) -> str:
    """One line per run: id, its first cell labels, seed, and every metric (sorted keys)."""
    keys = sorted({k for run in runs for k, v in run.metrics.items() if _finite(v) is not None})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(map(csv_text, ["run_id", "group", *axes, "seed", *keys, "path"]))
    for run in runs:
        labels = run.label_sets[0] if run.label_sets else {}
        writer.writerow([csv_text(run.id), csv_text(run.group), *[csv_text(labels.get(a, "")) for a in axes],
                         run.seed, *[repr(float(run.metrics[k])) if _finite(run.metrics.get(k)) is not None else ""
                                     for k in keys], csv_text(Path(run.path).name) if run.path else ""])
    return buffer.getvalue()
