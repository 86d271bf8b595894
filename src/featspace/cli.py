"""The ``featspace`` command: it parses the command line and dispatches to ``featspace.commands``.

    featspace list [heads|datasets|backbones|recipes|runs]
    featspace train [RECIPE] [--head H] [--dataset D] [--set key=value ...] [--resume RUN_DIR [--epochs N]]
    featspace eval RUN_DIR
    featspace predict RUN_DIR IMAGE_OR_FOLDER... [--out predictions.csv] [--top-k K]
    featspace embed RUN_DIR [IMAGE_OR_FOLDER... | --split train|test] [--out FILE.npz] [--tensorboard DIR]
    featspace export RUN_DIR [--format onnx|torchscript|exported-program] [--out FILE] [--no-check]
    featspace demo
    featspace bench SUITE [--seeds N] [--set key=value ...]
    featspace report SUITE|RUN_DIR...
    featspace fewshot RUN_DIR [--shots 1 5] [--episodes N]

train, eval, predict, bench and fewshot take ``--import MODULE`` (repeatable): a module of the user's own,
imported before any name is resolved (``featspace.commands._imports``).

Errors a user can act on (unknown names, missing data, bad overrides) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from featspace.commands import bench, demo, embed, evaluate, export, fewshot, listing, predict, report, train
from featspace.signals import Interrupted, handle_signals

__all__ = ["COMMANDS", "EXTRAS", "build_parser", "main", "missing_extra"]

#: the subcommands, in the order ``featspace --help`` lists them
COMMANDS = (listing, train, evaluate, predict, embed, export, demo, bench, report, fewshot)

#: top-level module -> the extra of featspace that installs it (``pip install featspace`` installs torch alone)
EXTRAS = {**dict.fromkeys(("lightning", "torchvision", "timm", "scipy", "sklearn", "matplotlib", "yaml", "numpy",
                           "PIL", "tensorboard", "tqdm"), "train"),
          **dict.fromkeys(("onnx", "onnxruntime", "onnxscript"), "export"), "wandb": "wandb", "mlflow": "mlflow"}


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """The line for a command that needs an extra which is not installed, or None for another missing module."""
    module = (err.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return f"this command needs featspace[{extra}] ({module} is not installed): pip install 'featspace[{extra}]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featspace", description="Discriminative feature learning: train, "
                                     "evaluate and compare classification heads.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with handle_signals():
            return int(args.func(args) or 0)
    except ValueError as err:
        print(f"featspace {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        line = missing_extra(err)
        if line is None:  # not one of featspace's dependencies: a broken install, whose traceback says more
            raise
        print(f"featspace {args.command}: error: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `featspace list | head`: the reader left; nothing to report (Python's advice)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as err:  # a missing file, a full disk, a read-only directory: what and where, in one line
        where = f": {err.filename}" if err.filename else ""
        print(f"featspace {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        # a run in progress is marked "interrupted" and resumes with --resume (a bench: run it again)
        code = err.exit_code if isinstance(err, Interrupted) else 130
        print(f"featspace {args.command}: {err or 'interrupted'}; the run stays resumable", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
