"""``featspace eval RUN_DIR``: re-evaluate a run from its checkpoint (metrics, embeddings, figures)."""

from __future__ import annotations

import argparse
from typing import Any

from featspace.commands._imports import add_import_option, import_modules
from featspace.commands._output import print_run

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="re-evaluate a run: metrics, embeddings and plots")
    p.add_argument("run_dir")
    p.add_argument("--no-plots", action="store_true")
    add_import_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from featspace.report.run_figures import draw_run_figures
    from featspace.rundir import RunDir
    from featspace.train import evaluate_run
    from featspace.train.fit import quiet_lightning

    import_modules(args.imports)
    quiet_lightning()
    rundir = RunDir(args.run_dir)
    metrics = evaluate_run(rundir.path)
    plots = [] if args.no_plots else draw_run_figures(rundir.path)
    print_run(rundir.name, rundir.path, metrics, plots)
    return 0
