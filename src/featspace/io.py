"""Atomic writes: a result file is either complete or absent, never half-written.

Every result (checkpoint, metrics, index row, plot, report) is written to a temporary file in the same
directory and renamed into place; ``os.replace`` is atomic on POSIX and Windows, so a crash or a full
disk leaves the previous version (or nothing), never a truncated file that looks finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

__all__ = ["MAX_YAML_BYTES", "atomic_path", "atomic_open", "load_yaml", "read_json", "read_yaml", "write_json",
           "write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed.

    ``suffix`` (default: the target's own suffix) matters for writers that pick a format from the
    file name, e.g. matplotlib's ``savefig`` or ``numpy.savez``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix,
                               dir=target.parent)
    # mkstemp makes the file 0600; a result file gets the mode any other new file would (0666 less the umask)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)  # the bytes are on disk before the name points at them: a crash leaves old or new
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux); elsewhere by setting
    and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # a writer that replaced the temporary file itself: nothing of ours to flush
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` for writing, atomically: the file appears at ``path`` only once closed without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """JSON with sorted keys and NaN written as null (strict JSON readers reject NaN)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(_jsonable(obj), handle, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")


#: recipes, suites and run configs are a few kilobytes; anything much larger is not one of them
MAX_YAML_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases: featspace's YAML files never need them, and nested
    aliases let a few hundred bytes expand into gigabytes ("billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"YAML aliases (*{event.anchor}) are not allowed here{event.start_mark}")
        return super().compose_node(parent, index)


def load_yaml(text: str, *, source: str = "YAML") -> Any:
    """Parse untrusted YAML as plain data: safe tags only (no ``!!python``), no aliases, at most
    ``MAX_YAML_BYTES``; a ValueError naming ``source`` for anything else."""
    if len(text.encode("utf-8", errors="replace")) > MAX_YAML_BYTES:
        raise ValueError(f"{source} is larger than {MAX_YAML_BYTES // 1024} KiB; not a featspace YAML file")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise ValueError(f"cannot read {source}: {detail}") from None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """:func:`load_yaml` of a file, refusing oversized files before reading them."""
    path = Path(path)
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ValueError(f"{path} is larger than {MAX_YAML_BYTES // 1024} KiB; not a featspace YAML file")
    return load_yaml(path.read_text(encoding="utf-8"), source=str(path))


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _jsonable(obj: Any) -> Any:
    import math

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()  # numpy / torch scalars
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
