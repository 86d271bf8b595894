"""``featspace train [RECIPE] [--head H] ... [--set key=value ...] [--resume RUN_DIR [--epochs N]]``: one run, then its
figures.

Typed options (``--epochs 3``, ``--lr 0.1``) go into the config as the values argparse parsed; only ``--set``
strings are parsed as YAML (``featspace.config.parse_overrides``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from featspace.commands._imports import add_import_option, import_modules
from featspace.commands._output import print_run

if TYPE_CHECKING:
    from featspace.config import TrainConfig

__all__ = ["add_parser", "config_from_args", "resume_extension", "run"]

#: options that set the config field of the same name
_FIELDS = ("head", "dataset", "backbone", "seed", "data_dir", "devices", "strategy", "num_nodes", "accelerator",
           "precision", "batch_size", "lr", "embedding_dim")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train one head (a recipe, with overrides)")
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
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint; with "
                   "--epochs N, train a finished (or interrupted) run on to N epochs and evaluate it again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (metrics are still computed)")
    add_import_option(p)
    p.set_defaults(func=run)
    return p


def _devices(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def config_from_args(args: argparse.Namespace, imports: list[str] | None = None) -> TrainConfig:
    """The recipe with ``--set`` overrides, then the typed options, as one mapping of typed values; ``imports``:
    the modules ``--import`` loaded, recorded in the config (``featspace.commands._imports``)."""
    from featspace.config import load_recipe, parse_overrides

    overrides: dict[str, Any] = dict(parse_overrides(args.set or []))
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = _devices(value) if name == "devices" else value
    if args.epochs is not None:
        overrides["max_epochs"] = args.epochs
    if args.download:
        overrides["download"] = True
    if imports:
        overrides["imports"] = list(imports)
    return load_recipe(args.recipe, overrides)


def resume_extension(args: argparse.Namespace) -> dict[str, Any]:
    """What ``--resume`` may change: the run's length (``--epochs N``, ``--set max_epochs=N``, or ``--set
    max_steps=N`` for a run that counts steps), as ``train(extend=...)`` takes it. A resumed run otherwise continues
    with its own config (its checkpoint was made with it); an option that would change it is an error, never
    silently ignored."""
    from featspace.config import parse_overrides
    from featspace.train.run import EXTENDABLE

    given = [f"--{name.replace('_', '-')}" for name in _FIELDS if getattr(args, name, None) is not None]
    given += [flag for flag, value in (("RECIPE", args.recipe), ("--download", args.download),
                                       ("--run-dir", args.run_dir)) if value]
    extend: dict[str, Any] = {}
    for key, value in parse_overrides(args.set or []):
        if key in EXTENDABLE:
            extend[key] = value
        elif "--set" not in given:
            given.append("--set")
    if args.epochs is not None:
        if extend.get("max_epochs", args.epochs) != args.epochs:
            raise ValueError(f"--epochs {args.epochs} and --set max_epochs={extend['max_epochs']} disagree")
        extend["max_epochs"] = args.epochs
    if given:
        raise ValueError(f"--resume continues a run with the config it was started with; {', '.join(given)} "
                         "would change it (only its length can grow: --epochs N): start a new run instead")
    return extend


def run(args: argparse.Namespace) -> int:
    from featspace.train import train

    imports = import_modules(args.imports)  # before any name is resolved
    if args.resume:
        # --import is not a change: a resumed run needs the modules it had
        result = train(resume=args.resume, extend=resume_extension(args), progress=not args.no_progress)
    else:
        result = train(config_from_args(args, imports), root=args.root, run_dir=args.run_dir,
                       progress=not args.no_progress)
    if result.metrics:  # the process that evaluated the run (rank 0)
        plots = []
        if not args.no_plots:  # matplotlib is loaded only for the figures
            from featspace.report.run_figures import draw_run_figures

            plots = draw_run_figures(result.path)
        print_run(result.run_id, result.path, result.metrics, plots)
    return 0
