"""The ``featspace`` command: train, eval, list, demo, bench, report.

    featspace list [heads|datasets|backbones|recipes|runs]
    featspace train [RECIPE] [--head H] [--dataset D] [--set key=value ...] [--resume RUN_DIR]
    featspace eval RUN_DIR
    featspace demo
    featspace bench SUITE [--seeds N] [--set key=value ...]
    featspace report SUITE|RUN_DIR...

Errors a user can act on (unknown names, missing data, bad overrides) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

# the table printed after training, and by the demo: (metric key, column title, format)
SUMMARY_COLUMNS = [
    ("accuracy", "acc", "{:.4f}"),
    ("ncc_accuracy", "NCC acc", "{:.4f}"),
    ("silhouette", "silhouette", "{:.3f}"),
    ("d_em", "D_EM (deg)", "{:.1f}"),
    ("train_seconds", "train s", "{:.1f}"),
]


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], first: str = "head") -> str:
    """A plain-text table: one row per dict, ``first`` as the leading column."""
    header = [first] + [title for _, title, _ in columns]
    body = []
    for row in rows:
        cells = [str(row.get(first, ""))]
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value) if isinstance(value, (int, float)) else str(value))
        body.append(cells)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ list
def _cmd_list(args: argparse.Namespace) -> int:
    what = args.what
    if what in ("heads", "all"):
        from featspace import heads

        _print_named("heads", [(n, heads.describe(n)) for n in heads.names()])
    if what in ("datasets", "all"):
        from featspace import data

        _print_named("datasets", [(n, data.describe(n)) for n in data.names()])
    if what in ("backbones", "all"):
        from featspace import models

        _print_named("backbones", [(n, models.describe(n)) for n in models.names()])
    if what in ("recipes", "all"):
        from featspace.train import describe_recipe, recipe_names

        _print_named("recipes", [(n, describe_recipe(n)) for n in recipe_names()])
    if what == "runs":
        from featspace.train import RunIndex

        index = RunIndex(args.root)
        rows = [{"id": r.id, "status": r.status, "head": r.head, "dataset": r.dataset, "seed": r.seed, **r.metrics}
                for r in index.query()]
        columns = [("status", "status", "{}"), ("head", "head", "{}"), ("dataset", "dataset", "{}"),
                   ("seed", "seed", "{}"), ("accuracy", "acc", "{:.4f}")]
        print(format_table(rows, columns, first="id") if rows else f"no runs indexed under {args.root}")
    return 0


def _print_named(title: str, items: list[tuple[str, str]]) -> None:
    print(f"{title}:")
    width = max((len(n) for n, _ in items), default=0)
    for name, description in items:
        print(f"  {name.ljust(width)}  {description}")
    print()


# ----------------------------------------------------------------------------------------- train
def _config_from_args(args: argparse.Namespace) -> Any:
    from featspace.train import load_recipe

    overrides = list(args.set or [])
    for field in ("head", "dataset", "backbone", "seed", "data_dir", "devices", "strategy", "num_nodes",
                  "accelerator", "precision", "batch_size", "lr", "embedding_dim"):
        value = getattr(args, field, None)
        if value is not None:
            overrides.append(f"{field}={value}")
    if args.epochs is not None:
        overrides.append(f"max_epochs={args.epochs}")
    if args.download:
        overrides.append("download=true")
    return load_recipe(args.recipe, overrides)


def _print_result(result: Any) -> None:
    from featspace.io import read_json

    print(f"\nrun {result.run_id}: {result.path}")
    metrics = result.metrics or read_json(Path(result.path) / "metrics.json")
    keys = [k for k in ("accuracy", "ncc_accuracy", "ncc_accuracy_cosine", "ncc_learned_accuracy", "silhouette",
                        "davies_bouldin", "calinski_harabasz", "homogeneity", "completeness", "d_em", "d_kl",
                        "discriminant_total", "train_seconds") if k in metrics]
    for key in keys:
        print(f"  {key:<24} {metrics[key]:.4f}")
    for path in result.plots:
        print(f"  plot: {path}")


def _cmd_train(args: argparse.Namespace) -> int:
    from featspace.train import train

    if args.resume:
        result = train(resume=args.resume, progress=not args.no_progress, plots=not args.no_plots)
    else:
        config = _config_from_args(args)
        result = train(config, root=args.root, run_dir=args.run_dir, progress=not args.no_progress,
                       plots=not args.no_plots)
    if result.metrics:
        _print_result(result)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from featspace.train import evaluate_run

    _print_result(evaluate_run(args.run_dir, plots=not args.no_plots))
    return 0


# ------------------------------------------------------------------------------------------ demo
DEMO_HEADS = ["softmax", "icv", "arcface", "hasep", "pod", "lace"]


def _cmd_demo(args: argparse.Namespace) -> int:
    """Train a few heads on scikit-learn's 8×8 digits (no download) and print a comparison table."""
    from featspace.train import load_recipe, train

    started = time.time()
    rows = []
    results = []
    for head in args.heads:
        overrides = [f"head={head}", f"seed={args.seed}"] + ([f"max_epochs={args.epochs}"] if args.epochs else [])
        config = load_recipe("digits-demo", overrides)
        print(f"[{len(rows) + 1}/{len(args.heads)}] training {head} on digits ...", flush=True)
        result = train(config, root=args.root, progress=False, suite="demo", cell=head)
        results.append(result)
        rows.append({"head": head, **result.metrics})
    print("\nfeatspace demo: small CNN on scikit-learn's 8x8 digits "
          f"({time.time() - started:.0f} s on this machine)\n")
    print(format_table(rows, SUMMARY_COLUMNS))
    print("\nplots:")
    for result in results:
        for path in result.plots:
            print(f"  {path}")
    return 0


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featspace", description="Discriminative feature learning: train, "
                                     "evaluate and compare classification heads.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list heads, datasets, backbones, recipes or indexed runs")
    p.add_argument("what", nargs="?", default="all", choices=["all", "heads", "datasets", "backbones", "recipes",
                                                               "runs"])
    p.add_argument("--root", default="runs", help="run root (for 'runs')")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("train", help="train one head (a recipe, with overrides)")
    p.add_argument("recipe", nargs="?", help="a shipped recipe name (see 'featspace list recipes') or a YAML path")
    p.add_argument("--head")
    p.add_argument("--dataset")
    p.add_argument("--backbone")
    p.add_argument("--embedding-dim", dest="embedding_dim", type=int)
    p.add_argument("--epochs", type=int, help="max_epochs")
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--data-dir", dest="data_dir")
    p.add_argument("--download", action="store_true", help="download the dataset (needs internet)")
    p.add_argument("--accelerator", help="cpu | gpu | auto")
    p.add_argument("--devices", help="devices (processes) per node")
    p.add_argument("--strategy", help="auto | ddp | ...")
    p.add_argument("--num-nodes", dest="num_nodes", type=int)
    p.add_argument("--precision", help="32-true | bf16-mixed | 16-mixed")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field, e.g. --set head_params.lam=0.5 (repeatable)")
    p.add_argument("--root", default="runs", help="directory of run directories and their index")
    p.add_argument("--run-dir", dest="run_dir", help="name the run directory (give every process the same one "
                   "under torchrun / SLURM / several nodes); default: a fresh one under --root")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (metrics are still computed)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="re-evaluate a run: metrics, embeddings and plots")
    p.add_argument("run_dir")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="train a few heads on the bundled digits and compare them")
    p.add_argument("--root", default="runs/demo")
    p.add_argument("--heads", nargs="+", default=DEMO_HEADS)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    from featspace.bench.command import add_bench_command
    from featspace.fewshot.cli import add_fewshot_command
    from featspace.report.command import add_report_command

    add_bench_command(sub)
    add_report_command(sub)
    add_fewshot_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"featspace {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"featspace {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
