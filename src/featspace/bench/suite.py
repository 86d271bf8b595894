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
    tables: [...]                      # see featspace.report.tables
    heatmaps: [...]                    # see featspace.report.build
    scatters: [...]
    figures: [...]
    fewshot:                           # optional: few-shot evaluation of every run after its training
      {shots: [1, 5], episodes: 2000, methods: [ncc], norm: cl2n}   # (featspace.fewshot.evaluate_run)

``fewshot`` takes the keyword arguments of ``featspace.fewshot.evaluate_run`` that define what is measured:
``shots``, ``episodes``, ``ways``, ``queries``, ``methods``, ``norm``, ``seed``, ``lam``, ``knn``, ``rectify``
(unset ones keep ``evaluate_run``'s defaults). They are not part of the cell key: a finished run whose
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
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from featspace.train.config import TrainConfig, apply_overrides, load_recipe

__all__ = [
    "Axis",
    "Cell",
    "Choice",
    "Suite",
    "cell_hash",
    "config_value",
    "load_suite",
    "suite_names",
]

#: config fields that never change what a run computes, left out of the cell hash
NON_RESULT_FIELDS = ("data_dir", "download", "num_workers", "notes", "recipe", "tsne")

_SUITE_KEYS = {"name", "description", "source", "recipe", "set", "seeds", "minutes_per_run", "matrix", "axis_names",
               "tables", "heatmaps", "scatters", "figures", "notes", "fewshot"}

#: the settings a suite's ``fewshot`` section may give, with what each must be (checked by ``_parse_fewshot``)
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
    #: keyword arguments of ``featspace.fewshot.evaluate_run`` applied to every run after training (None: off)
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
                values = _apply(values, layer)
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


def _apply(values: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """Apply native-valued overrides (``a.b`` keys and nested head_params mappings) to a copy of values."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for key, value in layer.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            nested = out.get(outer)
            if nested is None:
                nested = out[outer] = {}
            if not isinstance(nested, dict):
                raise ValueError(f"override {key}: {outer} is not a mapping")
            nested[inner] = value
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


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


# ------------------------------------------------------------------------------------------- cell keys
def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def cell_hash(config: TrainConfig | dict[str, Any]) -> str:
    """``<head>-<10 hex digits>``: the identity of a resolved config without its seed (module docstring)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    defaults = TrainConfig().to_dict()
    kept = {}
    for key, value in values.items():
        if key == "seed" or key in NON_RESULT_FIELDS:
            continue
        if key in defaults and _canonical(value) == _canonical(defaults[key]):
            continue
        kept[key] = value
    if isinstance(kept.get("head_params"), dict):
        head_defaults = _head_defaults(str(values.get("head")))
        params = {k: v for k, v in kept["head_params"].items()
                  if not (k in head_defaults and _canonical(v) == _canonical(head_defaults[k]))}
        if params:
            kept["head_params"] = params
        else:
            del kept["head_params"]
    text = json.dumps(_canonical(kept), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"{values.get('head', 'head')}-{digest}"


def _head_defaults(name: str) -> dict[str, Any]:
    from featspace import heads

    try:
        return heads.default_hparams(name)
    except ValueError:
        return {}


def config_value(config: TrainConfig | dict[str, Any], key: str) -> Any:
    """The value of a config key; ``head_params.x`` reaches into the head's hyperparameters (None if unset)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else config
    if "." in key:
        outer, inner = key.split(".", 1)
        nested = values.get(outer) or {}
        return nested.get(inner) if isinstance(nested, dict) else None
    return values.get(key)


# --------------------------------------------------------------------------------------------- loading
def _suite_dir() -> Path:
    return Path(str(resources.files("featspace") / "suites"))


def suite_names() -> list[str]:
    """Names of the suites shipped with featspace."""
    return sorted(p.stem for p in _suite_dir().glob("*.yaml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name, or a suite YAML file by path (read with ``yaml.safe_load``)."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = _suite_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown suite {str(name_or_path)!r}; shipped suites: {', '.join(suite_names())} "
                             "(or give the path of a suite .yaml file)")
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"suite {path} must be a YAML mapping")
    return parse_suite(raw, default_name=path.stem, path=path)


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
        base_overrides=_flatten(base),
        seeds=_seed_list(raw.get("seeds", 1)),
        minutes_per_run=float(minutes) if minutes is not None else None,
        blocks=blocks,
        tables=list(raw.get("tables") or []),
        heatmaps=list(raw.get("heatmaps") or []),
        scatters=list(raw.get("scatters") or []),
        figures=_as_list(raw.get("figures")),
        notes=str(raw.get("notes") or ""),
        axis_names={str(k): str(v) for k, v in (raw.get("axis_names") or {}).items()},
        fewshot=_parse_fewshot(raw.get("fewshot"), where) if raw.get("fewshot") is not None else None,
        path=path,
    )
    for kind in ("tables", "heatmaps", "scatters", "figures"):
        if not all(isinstance(t, dict) for t in getattr(suite, kind)):
            raise ValueError(f"{where}: every entry of '{kind}' must be a mapping")
    axis_names = {a.name for a in suite.axes}
    for table in suite.tables:
        for key in ("rows", "columns"):
            missing = [a for a in _as_list(table.get(key)) if a not in axis_names]
            if missing:
                raise ValueError(f"{where}: table {table.get('title', '')!r} uses unknown axis {missing[0]!r} in "
                                 f"'{key}'; axes: {', '.join(sorted(axis_names))}")
    return suite


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _parse_fewshot(raw: Any, where: str) -> dict[str, Any]:
    """The ``fewshot`` section as ``evaluate_run`` keyword arguments (lists as tuples), checked here so that a
    typo fails when the suite is loaded, not after the first hour of training."""
    from featspace.fewshot.episodes import METHODS, NORMS

    if not isinstance(raw, dict):
        raise ValueError(f"{where}: 'fewshot' must be a mapping of evaluate_run settings ({', '.join(FEWSHOT_KEYS)})")
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


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    """``{head_params: {lam: 1}}`` -> ``{head_params.lam: 1}``, so layers merge key by key."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "head_params" and isinstance(value, dict):
            if not value:
                out[key] = {}
            for inner, inner_value in value.items():
                out[f"head_params.{inner}"] = inner_value
        else:
            out[str(key)] = value
    return out


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
            overrides.update(_flatten(extra))
            set_values = choice.get("set") or {}
            if not isinstance(set_values, dict):
                raise ValueError(f"{where}: axis {name!r}: 'set' of a choice must be a mapping")
            overrides.update(_flatten(set_values))
            if not overrides:
                raise ValueError(f"{where}: axis {name!r}: choice {choice!r} sets nothing")
            if "label" in choice:
                label = str(choice["label"])
            elif "value" in choice:
                label = _label(choice["value"])
            elif name in overrides:
                label = _label(overrides[name])
            else:
                label = ", ".join(f"{k}={_label(v)}" for k, v in overrides.items())
        else:
            overrides = {name: choice}
            label = _label(choice)
        parsed.append(Choice(label=label, overrides=_flatten(overrides)))
    labels = [c.label for c in parsed]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{where}: axis {name!r} has repeated labels {labels}")
    return Axis(name=name, choices=tuple(parsed))
