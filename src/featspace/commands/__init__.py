"""The subcommands of ``featspace``, one module each: ``add_parser(subparsers)`` declares its arguments and sets
``func`` to its ``run(args) -> exit code``. ``featspace.cli`` only parses and dispatches."""
