"""Suites: a base recipe and a matrix of heads × datasets × backbones × hyperparameters × seeds, with the
layout of the tables a report draws from them and the published numbers to show beside ours.

A suite is a YAML file (``featspace/suites/<name>.yaml`` ships with the package; users can write their own
and pass its path). Its fields::

    name: icv-fashion                  # defaults to the file's stem
    description: one line              # shown by ``featspace bench --list``
    source: "001_... Tables 1-2"       # the paper a suite reproduces, if any
    recipe: icv-fashion                # the base recipe (a shipped name or a YAML path)
    set: {tsne: false}                 # overrides applied to every cell (dot keys reach into head_params)
    seeds: 3                           # default seeds: a count (0..N-1) or an explicit list
    minutes_per_run: 3                 # the expected time of one run, for --list and the first ETA
    matrix:                            # axes; a list of such mappings is the union of their products
      head:                            # an axis, named after the config key its plain values set
        - {label: "Cross entropy", head: icv, head_params: {lam: 0.0}}
        - {label: "ICV λ=1", head: icv, head_params: {lam: 1.0}}
      embedding_dim: [2, 4]            # plain values set the config key the axis is named after
      head_params.normalize:
        - {label: Non-Norm., value: false}
        - {label: Norm., value: true}
    axis_names: {head_params.scale: σ}  # display names of axes in tables and figures (default: the axis)
    reference: Softmax                 # the row every table compares the others with (a table's own
                                       # ``reference`` wins; default: a row labelled softmax; null: none)
    tables: [...]                      # see featspace.report.tables (none: one default table of every axis)
    heatmaps: [...]                    # see featspace.report.build
    scatters: [...]
    figures: [...]
    fewshot:                           # optional: few-shot evaluation of every run after its training
      {shots: [1, 5], episodes: 2000, methods: [ncc], norm: cl2n}   # (featspace.train.evaluate_fewshot)

``fewshot`` takes the keyword arguments of ``featspace.train.evaluate_fewshot`` that define what is measured:
``shots``, ``episodes``, ``ways``, ``queries``, ``methods``, ``norm``, ``seed``, ``lam``, ``knn``, ``rectify``
(unset ones keep ``evaluate_fewshot``'s defaults). They are not part of the cell key: a finished run whose
``fewshot.json`` lacks one of these settings' numbers, or was computed with other settings, is evaluated again
by the next ``featspace bench`` without retraining (see ``featspace.bench.runner``).

A choice of an axis is a plain value (it sets the config key named by the axis; its label is the value) or a
mapping with an optional ``label``, an optional ``value`` (for the axis's key), an optional ``set`` mapping,
and any other keys, which are config fields (``head_params`` as a nested mapping or as ``head_params.x`` keys).

Resolving a cell: the recipe's values, then the suite's ``set``, then each axis's choice in order, then the
user's ``key=value`` overrides, then the seed. When the resolved head differs from the recipe's, the recipe's
own ``head_params`` are dropped (they belong to another head); only the suite's, the axes' and the user's
``head_params`` apply.

The cell key (the ``cell`` column of the run index) identifies a resolved config and a seed:
``<head>-<hash>-s<seed>``, where ``<hash>`` is the first 10 hex digits of the SHA-256 of the canonical JSON of
the resolved config without the seed, without the fields that never change a result (``data_dir``,
``download``, ``num_workers``, ``notes``, ``recipe``, ``tsne``), without the fields equal to
``TrainConfig``'s defaults and without the head hyperparameters equal to the head's registered defaults (so a
config field or head hyperparameter added later with a default keeps every existing key, and
``head_params: {margin: 0.1}`` is the same cell as no head_params when 0.1 is the default). Integral floats
are written as integers (``lam: 1`` and ``lam: 1.0`` are the same cell). Two choices that resolve to the same
config are one cell. The price of ignoring defaults: changing a default in the code does not change the keys
of cells that relied on it, so such a change should come with a new suite name or a ``--set``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featspace.config import (
    TrainConfig,
    apply_overrides,
    as_list,
    cell_hash,
    flatten,
    label_text,
    load_recipe,
    merge,
    read_shipped_yaml,
    shipped_names,
)
from featspace.metrics.fewshot import METHODS, NORMS

__all__ = [
    "Axis",
    "Cell",
    "Choice",
    "Suite",
    "Layout",
    "load_suite",
    "suite_names",
]

_SUITE_KEYS = {"name", "description", "source", "recipe", "set", "seeds", "minutes_per_run", "matrix", "axis_names",
               "tables", "heatmaps", "scatters", "figures", "notes", "fewshot", "reference"}

#: the metrics of the table a suite without ``tables`` gets (a metric no run has shows as "-")
DEFAULT_TABLE_METRICS = [
    {"key": "accuracy", "name": "accuracy (%)", "scale": 100, "format": ".2f"},
    {"key": "ncc_accuracy", "name": "NCC acc. (%)", "scale": 100, "format": ".2f"},
    {"key": "silhouette", "name": "silhouette", "format": ".3f"},
    {"key": "davies_bouldin", "name": "Davies-Bouldin", "format": ".2f", "higher_is_better": False},
    {"key": "d_em", "name": "D_EM (deg)", "format": ".1f"},
]

#: the settings a suite's ``fewshot`` section may give: the keyword arguments of
#: ``featspace.train.evaluate_fewshot`` that define what is measured (each checked by ``_parse_fewshot``)
FEWSHOT_KEYS = ("shots", "episodes", "ways", "queries", "methods", "norm", "seed", "lam", "knn", "rectify")


@dataclass(frozen=True)
class Choice:
    """One value of an axis: its display label and the config overrides (dot keys) it applies."""

    label: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Axis:
    name: str
    choices: tuple[Choice, ...]


@dataclass
class Layout:
    """What a report needs to place runs: each axis's labels in display order, the label sets of the cells,
    the axes' display names, and (for a suite) every cell group with its label sets, in cell order.

    A suite gives its own (``Suite.layout``); a report on plain run directories builds one from the config keys
    that vary between the runs."""

    axis_labels: dict[str, list[str]]
    label_sets: list[dict[str, str]]
    axis_names: dict[str, str] = field(default_factory=dict)
    #: cell group (``Cell.group``) -> its label sets, in the suite's cell order
    groups: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def name(self, axis: str) -> str:
        """The display name of an axis (the suite's ``axis_names``, else the axis itself)."""
        return self.axis_names.get(axis, axis)


@dataclass
class Cell:
    """One resolved run of a suite: the config, its seed, its key, and the label of each axis's choice."""

    key: str
    group: str                      # the key without the seed: the runs of one cell over seeds
    config: TrainConfig
    #: axis name -> choice label, once for every combination of choices that resolves to this config
    #: (a configuration can appear in two blocks of the matrix, e.g. POD in a loss table and a width sweep)
    label_sets: list[dict[str, str]]

    @property
    def labels(self) -> dict[str, str]:
        return self.label_sets[0]

    @property
    def seed(self) -> int:
        return self.config.seed


@dataclass
class Suite:
    """A parsed suite file; ``expand`` turns it into cells."""

    name: str
    recipe: str
    description: str = ""
    source: str = ""
    base_overrides: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    minutes_per_run: float | None = None
    blocks: list[list[Axis]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    heatmaps: list[dict[str, Any]] = field(default_factory=list)
    scatters: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""
    axis_names: dict[str, str] = field(default_factory=dict)
    #: keyword arguments of ``featspace.train.evaluate_fewshot`` applied to every run after training (None: off)
    fewshot: dict[str, Any] | None = None
    path: Path | None = None

    @property
    def axes(self) -> list[Axis]:
        """Every axis name once, in order of first appearance (the union of the blocks' axes)."""
        seen: dict[str, Axis] = {}
        for block in self.blocks:
            for axis in block:
                seen.setdefault(axis.name, axis)
        return list(seen.values())

    def axis_labels(self, name: str) -> list[str]:
        """The labels of an axis in suite order, across blocks (each label once)."""
        labels: list[str] = []
        for block in self.blocks:
            for axis in block:
                if axis.name == name:
                    labels.extend(c.label for c in axis.choices if c.label not in labels)
        return labels

    def layout(self, overrides: list[str] | tuple[str, ...] = ()) -> Layout:
        """The suite's :class:`Layout` under the user's overrides (which change the cell groups)."""
        groups: dict[str, list[dict[str, str]]] = {}
        sets: list[dict[str, str]] = []
        for cell in self.expand(seeds=[self.seeds[0]], overrides=list(overrides)):
            groups[cell.group] = [dict(x) for x in cell.label_sets]
            sets.extend(labels for labels in cell.label_sets if labels not in sets)
        return Layout({a.name: self.axis_labels(a.name) for a in self.axes}, sets, dict(self.axis_names), groups)

    def expand(self, *, seeds: int | list[int] | None = None, overrides: list[str] | tuple[str, ...] = (),
               ) -> list[Cell]:
        """Every cell of the matrix for each seed, seed-major: the first seed of every configuration comes
        first, then the second, so that a bench stopped early has covered the whole matrix once."""
        seed_list = _seed_list(seeds if seeds is not None else self.seeds)
        configs: dict[str, tuple[TrainConfig, list[dict[str, str]]]] = {}
        for labels, choice_overrides in self._combinations():
            config = self.resolve(choice_overrides, list(overrides), seed=seed_list[0])
            group = cell_hash(config)
            if group in configs:
                if labels not in configs[group][1]:
                    configs[group][1].append(labels)
                continue
            configs[group] = (config, [labels])
        cells = []
        for seed in seed_list:
            for group, (config, label_sets) in configs.items():
                seeded = dataclasses.replace(config, seed=seed)
                cells.append(Cell(key=f"{group}-s{seed}", group=group, config=seeded,
                                  label_sets=[dict(x) for x in label_sets]))
        return cells

    def _combinations(self) -> list[tuple[dict[str, str], list[dict[str, Any]]]]:
        combos = []
        for block in self.blocks or [[]]:
            for picks in itertools.product(*[axis.choices for axis in block]):
                labels = {axis.name: choice.label for axis, choice in zip(block, picks)}
                combos.append((labels, [choice.overrides for choice in picks]))
        return combos

    def resolve(self, choice_overrides: list[dict[str, Any]], user_overrides: list[str], *,
                seed: int = 0) -> TrainConfig:
        """The config of one combination of choices (see the module docstring for the order)."""
        base = load_recipe(self.recipe).to_dict()
        layers = [self.base_overrides, *choice_overrides]

        def layered(start: dict[str, Any]) -> dict[str, Any]:
            values = start
            for layer in layers:
                values = merge(values, layer)
            return apply_overrides(values, user_overrides)

        values = layered(base)
        if values.get("head") != base.get("head"):
            # the recipe's head_params belong to the recipe's head: keep only those the suite or user set
            values = layered({**base, "head_params": {}})
        values["seed"] = seed
        try:
            return TrainConfig.from_dict(values)
        except ValueError as err:
            raise ValueError(f"suite {self.name}: {err}") from None


def _seed_list(seeds: int | list[int]) -> list[int]:
    if isinstance(seeds, bool):
        raise ValueError(f"seeds must be a count or a list of ints, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"the number of seeds must be at least 1, got {seeds}")
        return list(range(seeds))
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a count or a non-empty list of ints, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    return list(seeds)


# --------------------------------------------------------------------------------------------- loading
def suite_names() -> list[str]:
    """Names of the suites shipped with featspace."""
    return shipped_names("suites")


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name, or a suite YAML file by path (read with ``yaml.safe_load``)."""
    name, path, raw = read_shipped_yaml(name_or_path, "suites", "suite")
    return parse_suite(raw, default_name=name, path=path)


def parse_suite(raw: dict[str, Any], *, default_name: str = "suite", path: Path | None = None) -> Suite:
    """A :class:`Suite` from the mapping of a suite file; raises ValueError naming what is wrong."""
    where = f"suite {path or default_name}"
    unknown = sorted(set(raw) - _SUITE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_SUITE_KEYS))}")
    if "recipe" not in raw:
        raise ValueError(f"{where}: needs a base 'recipe'")
    base = raw.get("set") or {}
    if not isinstance(base, dict):
        raise ValueError(f"{where}: 'set' must be a mapping of config fields")
    matrix = raw.get("matrix") or {}
    blocks_raw = matrix if isinstance(matrix, list) else [matrix]
    blocks = []
    for block in blocks_raw:
        if not isinstance(block, dict):
            raise ValueError(f"{where}: each matrix block must be a mapping of axis name -> list of choices")
        blocks.append([_parse_axis(name, choices, where) for name, choices in block.items()])
    minutes = raw.get("minutes_per_run")
    suite = Suite(
        name=str(raw.get("name") or default_name),
        recipe=str(raw["recipe"]),
        description=str(raw.get("description") or ""),
        source=str(raw.get("source") or ""),
        base_overrides=flatten(base),
        seeds=_seed_list(raw.get("seeds", 1)),
        minutes_per_run=float(minutes) if minutes is not None else None,
        blocks=blocks,
        tables=[dict(t) if isinstance(t, dict) else t for t in raw.get("tables") or []],  # copies: defaults go in
        heatmaps=list(raw.get("heatmaps") or []),
        scatters=list(raw.get("scatters") or []),
        figures=as_list(raw.get("figures")),
        notes=str(raw.get("notes") or ""),
        axis_names={str(k): str(v) for k, v in (raw.get("axis_names") or {}).items()},
        fewshot=_parse_fewshot(raw.get("fewshot"), where) if raw.get("fewshot") is not None else None,
        path=path,
    )
    for kind in ("tables", "heatmaps", "scatters", "figures"):
        if not all(isinstance(t, dict) for t in getattr(suite, kind)):
            raise ValueError(f"{where}: every entry of '{kind}' must be a mapping")
    reference = raw.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise ValueError(f"{where}: 'reference' must be the name of the row every table compares with (e.g. "
                         f"Softmax), got {reference!r}")
    if not suite.tables and suite.axes:
        # without tables a report would show no numbers and say nothing: one row per configuration instead
        suite.tables = [{"title": "Results (default table: the suite defines no tables)",
                         "rows": [a.name for a in suite.axes], "metrics": [dict(m) for m in DEFAULT_TABLE_METRICS],
                         "note": "The suite has no 'tables' section: every axis of its matrix is a row axis and the "
                                 "metrics are featspace's main ones."}]
    axis_names = {a.name for a in suite.axes}
    for table in suite.tables:
        for key in ("rows", "columns"):
            missing = [a for a in as_list(table.get(key)) if a not in axis_names]
            if missing:
                raise ValueError(f"{where}: table {table.get('title', '')!r} uses unknown axis {missing[0]!r} in "
                                 f"'{key}'; axes: {', '.join(sorted(axis_names))}")
        select = table.get("select")
        if isinstance(select, dict):
            missing = [a for a in as_list(select.get("axes")) if a not in axis_names]
            if missing:
                raise ValueError(f"{where}: table {table.get('title', '')!r} selects over unknown axis {missing[0]!r}; "
                                 f"axes: {', '.join(sorted(axis_names))}")
        if reference is not None and "reference" not in table:
            table["reference"] = reference
        _check_table_covers_cells(suite, table, where)
    return suite


def _where_clauses(raw: Any) -> list[dict[str, list[str | None]]]:
    clauses = raw if isinstance(raw, list) else ([raw] if raw else [])
    return [{str(k): [None if x is None else label_text(x) for x in as_list(v)] if v is not None else [None]
             for k, v in clause.items()} for clause in clauses if isinstance(clause, dict)]


def _check_table_covers_cells(suite: Suite, table: dict[str, Any], where: str) -> None:
    """A table must hold some cell of the matrix: a cell belongs to it when each of its axes is a row, a column or a
    ``where`` key of the table and its labels pass ``where`` (``featspace.report.tables``). A table that leaves an
    axis out would print "no finished runs yet" over finished runs, so name the axis now. Also checks that the
    table's ``reference`` (or the suite's) is one of its rows."""
    title = table.get("title", "")
    rows = [str(a) for a in as_list(table.get("rows"))]
    clauses = _where_clauses(table.get("where"))
    select = table.get("select") if isinstance(table.get("select"), dict) else {}
    covered = (set(rows) | {str(a) for a in as_list(table.get("columns"))} | {k for c in clauses for k in c}
               | {str(a) for a in as_list(select.get("axes"))})
    held: list[dict[str, str]] = []
    left_out: list[str] = []
    for labels, _ in suite._combinations():
        if not set(labels) <= covered:
            left_out.extend(a for a in labels if a not in covered and a not in left_out)
            continue
        if not clauses or any(all(labels.get(a) in wanted for a, wanted in c.items()) for c in clauses):
            held.append(labels)
    if not held:
        if left_out:
            raise ValueError(f"{where}: table {title!r} holds no cell of the matrix: it leaves axis "
                             f"{left_out[0]!r} out of its rows, columns and where; add it to 'rows' or 'columns', "
                             f"or pick one of its labels with 'where'")
        raise ValueError(f"{where}: table {title!r} holds no cell of the matrix: its 'where' matches no "
                         f"combination of labels")
    reference = table.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise ValueError(f"{where}: table {title!r}: 'reference' must be a row name (labels joined ' / ') or null")
    if reference:
        names = list(dict.fromkeys(" / ".join(x for x in (labels.get(a, "") for a in rows) if x) for labels in held))
        if reference not in names:
            raise ValueError(f"{where}: table {title!r}: reference {reference!r} is not a row of the table; rows: "
                             f"{', '.join(names)}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _parse_fewshot(raw: Any, where: str) -> dict[str, Any]:
    """The ``fewshot`` section as ``evaluate_fewshot`` keyword arguments (lists as tuples), checked here so that a
    typo fails when the suite is loaded, not after the first hour of training."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: 'fewshot' must be a mapping of evaluate_fewshot settings "
                         f"({', '.join(FEWSHOT_KEYS)})")
    unknown = sorted(set(raw) - set(FEWSHOT_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown fewshot setting(s) {', '.join(map(str, unknown))}; "
                         f"valid: {', '.join(FEWSHOT_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "shots":
            shots = value if isinstance(value, list) else [value]
            if not shots or not all(_positive_int(k) for k in shots) or len(set(shots)) != len(shots):
                raise ValueError(f"{where}: fewshot shots must be distinct positive integers, got {value!r}")
            out[key] = tuple(shots)
        elif key == "methods":
            methods = value if isinstance(value, list) else [value]
            bad = [m for m in methods if m not in METHODS]
            if not methods or bad:
                raise ValueError(f"{where}: fewshot methods must be among {', '.join(METHODS)}, got {value!r}")
            out[key] = tuple(methods)
        elif key == "norm":
            if value not in NORMS:
                raise ValueError(f"{where}: fewshot norm must be one of {', '.join(NORMS)}, got {value!r}")
            out[key] = value
        elif key in ("episodes", "ways", "queries", "knn"):
            if not _positive_int(value):
                raise ValueError(f"{where}: fewshot {key} must be a positive integer, got {value!r}")
            out[key] = value
        elif key == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{where}: fewshot seed must be an integer, got {value!r}")
            out[key] = value
        elif key == "lam":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}: fewshot lam must be a finite number, got {value!r}")
            out[key] = float(value)
        elif key == "rectify":
            if not isinstance(value, bool):
                raise ValueError(f"{where}: fewshot rectify must be true or false, got {value!r}")
            out[key] = value
    return out


def _parse_axis(name: str, choices: Any, where: str) -> Axis:
    if not isinstance(choices, list) or not choices:
        raise ValueError(f"{where}: axis {name!r} must be a non-empty list of choices")
    parsed = []
    for choice in choices:
        if isinstance(choice, dict):
            overrides: dict[str, Any] = {}
            extra = {k: v for k, v in choice.items() if k not in ("label", "value", "set")}
            if "value" in choice:
                overrides[name] = choice["value"]
            overrides.update(flatten(extra))
            set_values = choice.get("set") or {}
            if not isinstance(set_values, dict):
                raise ValueError(f"{where}: axis {name!r}: 'set' of a choice must be a mapping")
            overrides.update(flatten(set_values))
            if not overrides:
                raise ValueError(f"{where}: axis {name!r}: choice {choice!r} sets nothing")
            if "label" in choice:
                label = str(choice["label"])
            elif "value" in choice:
                label = label_text(choice["value"])
            elif name in overrides:
                label = label_text(overrides[name])
            else:
                label = ", ".join(f"{k}={label_text(v)}" for k, v in overrides.items())
        else:
            overrides = {name: choice}
            label = label_text(choice)
        parsed.append(Choice(label=label, overrides=flatten(overrides)))
    labels = [c.label for c in parsed]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{where}: axis {name!r} has repeated labels {labels}")
    return Axis(name=name, choices=tuple(parsed))
