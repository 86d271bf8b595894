"""``featspace demo``: a few heads on scikit-learn's 8×8 digits (no download), compared in one table."""

from __future__ import annotations

import argparse
import time
from typing import Any

from featspace.commands._output import SUMMARY_COLUMNS, format_table

__all__ = ["DEMO_HEADS", "add_parser", "run"]

DEMO_HEADS = ["softmax", "icv", "arcface", "hasep", "pod", "lace"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="train a few heads on the bundled digits and compare them")
    p.add_argument("--root", default="runs/demo")
    p.add_argument("--heads", nargs="+", default=DEMO_HEADS)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from featspace.config import load_recipe
    from featspace.report.run_figures import draw_run_figures
    from featspace.train import train

    started = time.time()
    rows = []
    plots = []
    for number, head in enumerate(args.heads, start=1):
        overrides: dict[str, Any] = {"head": head, "seed": args.seed}
        if args.epochs:
            overrides["max_epochs"] = args.epochs
        print(f"[{number}/{len(args.heads)}] training {head} on digits ...", flush=True)
        result = train(load_recipe("digits-demo", overrides), root=args.root, progress=False, suite="demo",
                       cell=head)
        plots.extend(draw_run_figures(result.path))
        rows.append({"head": head, **result.metrics})
    print("\nfeatspace demo: small CNN on scikit-learn's 8x8 digits "
          f"({time.time() - started:.0f} s on this machine)\n")
    print(format_table(rows, SUMMARY_COLUMNS))
    print("\nplots:")
    for path in plots:
        print(f"  {path}")
    return 0
