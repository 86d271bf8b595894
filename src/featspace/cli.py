"""The ``featspace`` command: it parses the command line and dispatches to ``featspace.commands``.

    featspace list [heads|datasets|backbones|recipes|runs]
    featspace train [RECIPE] [--head H] [--dataset D] [--set key=value ...] [--resume RUN_DIR]
    featspace eval RUN_DIR
    featspace predict RUN_DIR IMAGE_OR_FOLDER... [--out predictions.csv] [--top-k K]
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

from featspace.commands import bench, demo, evaluate, fewshot, listing, predict, report, train
from featspace.signals import Interrupted, handle_signals

__all__ = ["build_parser", "main"]

#: the subcommands, in the order ``featspace --help`` lists them
COMMANDS = (listing, train, evaluate, predict, demo, bench, report, fewshot)


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
