"""``--import MODULE``: the user's own code (a backbone registered with ``featspace.models.register_backbone``,
a head, a dataset) imported before any name is resolved. One option and one importer for every command that
builds a model (train, eval, bench, predict, embed, export, fewshot).

MODULE is a module name, imported with ``importlib.import_module`` from the current directory or ``sys.path``
(``PYTHONPATH``) — ``mypkg.backbones`` — or the path of a ``.py`` file (anything ending in ``.py`` or holding a
``/``), executed as the module named by its stem. Only the command line imports: a recipe, suite or run
directory is data and never makes featspace run code; a run records what was imported (the config's
``imports``), so that a later command on it can say which ``--import`` it needs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["add_import_option", "import_modules"]


def add_import_option(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--import MODULE`` option (``args.imports``, a list) to a command's parser."""
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first: a module name (from the current directory or PYTHONPATH) or a "
                             ".py file, e.g. one that registers a backbone with featspace.models.register_backbone "
                             "(repeatable; a run records it)")


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def _import_file(spec: str) -> str:
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"--import {spec}: no such file")
    if path.suffix != ".py":
        raise ValueError(f"--import {spec}: a file to import must end in .py")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) and Path(loaded.__file__).resolve() == path:
        return str(path)  # imported already (a second command in the same process)
    if loaded is not None:
        raise ValueError(f"--import {spec}: a module named {name!r} is imported already ({loaded.__name__} from "
                         f"{getattr(loaded, '__file__', 'built in')}); rename the file")
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"--import {spec}: cannot import this file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # as an import would: the module may import itself, dataclasses look it up
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return str(path)


def _import_name(spec: str) -> str:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # as `python -m` does (the `featspace` script has its own directory on sys.path instead); it stays, for
        # the module's own later imports
        sys.path.insert(0, cwd)
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as err:
        if err.name is not None and (spec == err.name or spec.startswith(f"{err.name}.")):
            raise ValueError(f"--import {spec}: no module named {err.name!r} in the current directory or on "
                             "PYTHONPATH (or give the path of a .py file)") from None
        raise ValueError(f"--import {spec}: importing it failed: {err}") from None
    return spec


def import_modules(specs: Iterable[str]) -> list[str]:
    """Import each ``--import`` value in order (module docstring); returns them as a run records them: module names
    as given, files as absolute paths. An import error of the module itself is a one-line ValueError; an
    exception raised by its code propagates as it is (a bug to see whole)."""
    recorded = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            raise ValueError("--import needs a module name or the path of a .py file")
        recorded.append(_import_file(spec) if _is_path(spec) else _import_name(spec))
    return list(dict.fromkeys(recorded))
