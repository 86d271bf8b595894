"""``featspace list [heads|datasets|backbones|recipes|runs]``: what featspace has, and the indexed runs."""

from __future__ import annotations

import argparse
from typing import Any

from featspace.commands._output import format_table

__all__ = ["add_parser", "run"]

_WHAT = ["all", "heads", "datasets", "backbones", "recipes", "runs"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("list", help="list heads, datasets, backbones, recipes or indexed runs")
    p.add_argument("what", nargs="?", default="all", choices=_WHAT)
    p.add_argument("--root", default="runs", help="run root (for 'runs')")
    p.set_defaults(func=run)
    return p


def _print_named(title: str, items: list[tuple[str, str]]) -> None:
    print(f"{title}:")
    width = max((len(n) for n, _ in items), default=0)
    for name, description in items:
        print(f"  {name.ljust(width)}  {description}")
    print()


def run(args: argparse.Namespace) -> int:
    from featspace import config, data, heads, models
    from featspace.rundir import RunIndex

    what = args.what
    if what in ("heads", "all"):
        _print_named("heads", [(n, heads.describe(n)) for n in heads.names()])
    if what in ("datasets", "all"):
        _print_named("datasets", [(n, data.describe(n)) for n in data.names()])
    if what in ("backbones", "all"):
        # then the prefixes that reach any model of timm and torchvision (not listed one by one: 1000+ names)
        _print_named("backbones", [(n, models.describe(n)) for n in models.names()]
                     + [(f"{prefix}<name>", text) for prefix, text in models.prefixes()])
    if what in ("recipes", "all"):
        _print_named("recipes", [(n, config.describe_recipe(n)) for n in config.recipe_names()])
    if what == "runs":
        # metrics only beside finished runs: an unfinished run's numbers are not its results
        rows = [{"id": r.id, "status": r.status, "head": r.head, "dataset": r.dataset, "seed": r.seed,
                 **(r.metrics if r.status == "finished" else {})} for r in RunIndex(args.root).query()]
        columns = [("status", "status", "{}"), ("head", "head", "{}"), ("dataset", "dataset", "{}"),
                   ("seed", "seed", "{}"), ("accuracy", "acc", "{:.4f}")]
        print(format_table(rows, columns, first="id") if rows else f"no runs indexed under {args.root}")
    return 0
