"""Checkpoint I/O for Lightning: atomic writes, and loads that never execute code from the file.

Lightning's default writes the checkpoint in place; a kill during the write leaves a truncated
``last.ckpt`` that a later ``--resume`` would choke on. Here the bytes go to a temporary file that is
renamed into place (``featspace.io.atomic_path``). Loading uses ``torch.load(weights_only=True)``:
checkpoints are data other people made (``shared/DESIGN.md``, Safety).
"""

from __future__ import annotations

import errno
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from featspace.io import atomic_path

__all__ = ["AtomicCheckpointIO", "load_checkpoint"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose saves are atomic and whose loads are ``weights_only``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        try:
            with atomic_path(Path(path), suffix=".tmp") as tmp:
                torch.save(checkpoint, tmp)
        except (OSError, RuntimeError) as err:
            if _disk_full(err):
                raise OSError(errno.ENOSPC, "no space left on the device to write the checkpoint",
                              str(path)) from None
            raise

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        return load_checkpoint(path, map_location=map_location)


def _disk_full(err: BaseException) -> bool:
    """Whether a failed write ran out of space; torch reports it as "PytorchStreamWriter failed writing file
    ...: file write failed", not as an OSError."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, RuntimeError) and ("write failed" in str(err) or "No space left" in str(err))


def load_checkpoint(path: str | Path, map_location: Any | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint as plain data; a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (an interrupted copy?)")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notices are noise beside the error below
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):  # torch refused anything but tensors and plain data
            raise ValueError(f"checkpoint {path} is not a featspace checkpoint: it holds something other than "
                             "tensors and plain data (random bytes, another format, or code), so it was not "
                             "loaded") from None
        raise ValueError(f"checkpoint {path} is not a readable torch checkpoint (UnpicklingError: "
                         f"{' '.join(str(err).split())[:160]})") from None
    except Exception as err:  # truncated, random bytes, another format
        first = " ".join(str(err).split())[:160]
        raise ValueError(f"checkpoint {path} is not a readable torch checkpoint ({type(err).__name__}: "
                         f"{first})") from None
