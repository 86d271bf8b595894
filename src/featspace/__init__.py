"""featspace: discriminative feature learning for image classifiers.

Heads (``featspace.heads``) turn embeddings into a loss and class scores; ``featspace.functional`` holds
their pure math; ``featspace.pedcc`` generates predefined evenly-distributed class centroids. These need torch
alone (``pip install featspace``). ``featspace.load_run(RUN_DIR)`` returns a trained run ready for ``predict`` and
``embed``; it, training, metrics and reports need ``pip install 'featspace[train]'``.

This module stays light: ``import featspace`` imports nothing else. Its names are resolved on first use (a module
``__getattr__``), so ``featspace.load_run`` loads the trainer's modules only when it is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["TrainedRun", "__version__", "functional", "heads", "load_run", "pedcc"]

#: public name -> the module that defines it, imported on first use (the training layer sits above this one)
_LAZY = {"load_run": "featspace.train.inference", "TrainedRun": "featspace.train.inference"}
_SUBMODULES = ("functional", "heads", "pedcc")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"featspace.{name}")
    raise AttributeError(f"module 'featspace' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
