"""The subcommands of ``featspace``, one module each: ``add_parser(subparsers)`` declares its arguments and sets
``func`` to its ``run(args) -> exit code``. ``featspace.cli`` only parses and dispatches.

A command module imports at its top only what its parser needs (argparse); what it runs — torch, Lightning,
matplotlib, through ``featspace.train`` or ``featspace.report`` — is imported inside ``run``, so that
``featspace --help`` and ``featspace list`` answer in well under a second instead of loading all of them."""

#: the command modules (``from featspace.commands import *`` imports them; each is light)
__all__ = ["bench", "demo", "embed", "evaluate", "fewshot", "listing", "predict", "report", "train"]
