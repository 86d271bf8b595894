"""``featspace bench``: run every cell of a suite that has not finished, resumably (``featspace.bench``).

    featspace bench SUITE [--seeds N] [--set key=value ...] [--root runs] [--dry-run]
    featspace bench --list
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from featspace.commands._imports import add_import_option, import_modules

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="run a suite of runs (heads x datasets x hyperparameters x seeds), "
                              "resumably", description="Run every cell of a suite that has not finished yet. "
                              "Killed and started again, it skips finished cells and resumes interrupted ones.")
    p.add_argument("suite", nargs="?", help="a shipped suite (see --list) or the path of a suite YAML file")
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1); default: the suite's")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a config field in every cell, e.g. --set max_epochs=5 (repeatable; "
                        "changes the cell keys)")
    p.add_argument("--root", default="runs", help="directory of run directories and their index")
    p.add_argument("--list", action="store_true", help="list the shipped suites and exit")
    p.add_argument("--dry-run", action="store_true", help="show what would run, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_import_option(p)
    p.set_defaults(func=run)
    return p


def _list_suites() -> int:
    from featspace.suite import load_suite, suite_names

    rows = []
    for name in suite_names():
        suite = load_suite(name)
        groups = len({c.group for c in suite.expand()})
        runs = groups * len(suite.seeds)
        minutes = f"{suite.minutes_per_run:g} min/run" if suite.minutes_per_run else "?"
        rows.append((name, f"{groups} configs x {len(suite.seeds)} seeds = {runs} runs, {minutes}",
                     suite.description))
    width = max(len(r[0]) for r in rows)
    width2 = max(len(r[1]) for r in rows)
    print("suites:")
    for name, size, description in rows:
        print(f"  {name.ljust(width)}  {size.ljust(width2)}  {description}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run (or list, or dry-run) a suite; exit code 0 when every cell has finished, 1 otherwise."""
    from featspace.bench import plan_suite, run_suite

    if args.list:
        return _list_suites()
    if not args.suite:
        print("featspace bench: give a SUITE (see 'featspace bench --list')", file=sys.stderr)
        return 2
    imports = import_modules(args.imports)
    if imports:  # recorded in every cell's config; not part of the cell keys (config.NON_RESULT_FIELDS)
        args.set = [*args.set, f"imports={json.dumps(imports)}"]
    if args.dry_run:
        plans = plan_suite(args.suite, seeds=args.seeds, overrides=args.set, root=args.root)
        for number, plan in enumerate(plans, start=1):
            labels = ", ".join(f"{k}={v}" for k, v in plan.cell.labels.items())
            print(f"[{number}/{len(plans)}] {plan.cell.key}  {plan.action:<7}  {labels}, seed={plan.cell.seed}")
        return 0
    # SIGTERM (a scheduler's kill, `kill PID`) and Ctrl-C end here as featspace.signals.Interrupted: the current
    # run is marked interrupted and keeps its last checkpoint for the next invocation (featspace.cli)
    run_suite(args.suite, seeds=args.seeds, overrides=args.set, root=args.root, progress=not args.quiet)
    unfinished = [p for p in plan_suite(args.suite, seeds=args.seeds, overrides=args.set, root=args.root)
                  if p.action != "skip"]
    return 0 if not unfinished else 1
