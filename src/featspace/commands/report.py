"""``featspace report``: tables and figures of a suite's runs or of run directories (``featspace.report``).

    featspace report SUITE [--root runs] [--out DIR] [--set key=value ...]
    featspace report RUN_DIR [RUN_DIR ...] [--out DIR]
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="tables (mean ± std over seeds, beside the paper's numbers) and "
                              "figures of a suite or of run directories, as Markdown, HTML and CSV")
    p.add_argument("target", nargs="+", metavar="SUITE|RUN_DIR",
                   help="a suite name or suite YAML path, or one or more run directories")
    p.add_argument("--root", default="runs", help="run root whose index a suite report reads")
    p.add_argument("--out", help="output folder (default: ROOT/reports/SUITE/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="the overrides the bench was run with, so the report reads the same cells")
    p.add_argument("--max-figures", type=int, default=24, help="configurations with figures per figure entry")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from featspace.report.build import build_report
    from featspace.rundir import RunDir

    targets = list(args.target)
    run_dirs = [t for t in targets if RunDir(t).is_run()]
    if run_dirs and len(run_dirs) != len(targets):
        raise ValueError("give either one suite or run directories, not both")
    if not run_dirs and len(targets) > 1:
        raise ValueError(f"give one suite at a time (got {', '.join(targets)})")
    paths = build_report(run_dirs if run_dirs else targets[0], root=args.root, out_dir=args.out,
                         overrides=args.set, max_figures=args.max_figures)
    print(f"report: {paths.markdown}")
    print(f"        {paths.html}")
    print(f"        {paths.csv}")
    print(f"        {paths.runs_csv}")
    for figure in paths.figures:
        print(f"figure: {figure}")
    return 0
