"""The SQLite index of runs: ``<root>/index.sqlite``, one row per run, which benchmarks and reports read.

The files of one run directory are ``featspace.rundir.layout``'s; this module keeps the rows.

Guarantees (``shared/DESIGN.md``, Safety):
- run ids are unique even for runs started at the same instant (time stamp + random suffix, and the
  directory is created with ``exist_ok=False``), so a run never overwrites another's directory;
- every SQL statement takes its values as parameters, never by string formatting;
- a run is "running" until it finishes; one whose process died is reported as "interrupted" (its row
  records host and pid, and a dead pid on this host means the run cannot still be going), so an
  interrupted run is never taken for a finished one.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_ROOT", "INDEX_FILE", "STATUSES", "RunIndex", "RunIndexError", "RunRecord", "code_version",
           "new_run_dir"]

DEFAULT_ROOT = Path("runs")
INDEX_FILE = "index.sqlite"
STATUSES = ("running", "finished", "failed", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    recipe TEXT,
    head TEXT,
    dataset TEXT,
    backbone TEXT,
    seed INTEGER,
    status TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    host TEXT,
    pid INTEGER,
    code_version TEXT,
    config TEXT,
    metrics TEXT,
    suite TEXT,
    cell TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_suite_cell ON runs (suite, cell);
"""


@dataclass
class RunRecord:
    """One row of the index, with ``config`` and ``metrics`` decoded from JSON."""

    id: str
    path: str
    recipe: str | None
    head: str | None
    dataset: str | None
    backbone: str | None
    seed: int | None
    status: str
    started: float
    finished: float | None
    host: str | None
    pid: int | None
    code_version: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    suite: str | None
    cell: str | None
    error: str | None


def code_version() -> str:
    """The git commit of the featspace source (with ``+dirty`` when the package's own files — code, recipes,
    suites — have local changes), else the package version. Edits elsewhere in the checkout (the README, the
    committed reports under docs/) do not change what a run computes, so they do not mark it dirty: a bench
    can run while its reading is written."""
    from featspace import __version__

    package = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=package, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=package,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return f"{__version__}+{commit}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def new_run_dir(root: str | os.PathLike[str], prefix: str = "") -> tuple[str, Path]:
    """Create a fresh run directory under ``root``; returns (run_id, path). Never reuses a directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        run_id = f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        path = root / run_id
        try:
            path.mkdir(exist_ok=False)
        except FileExistsError:
            continue
        return run_id, path
    raise RuntimeError(f"could not create a unique run directory under {root}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunIndexError(ValueError):
    """The index file cannot be read or written (a one-line error for the commands)."""


class RunIndex:
    """The SQLite index of runs under a root directory (``<root>/index.sqlite``)."""

    @staticmethod
    def exists(root: str | os.PathLike[str]) -> bool:
        """Whether ``root`` holds an index already (without creating one)."""
        return (Path(root) / INDEX_FILE).is_file()

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / INDEX_FILE
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # one short transaction per call: several processes (a bench, a report) may use the index at once
        try:
            db = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as err:
            raise RunIndexError(f"cannot open the run index {self.path}: {err}") from None
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            with db:
                yield db
        except sqlite3.Error as err:  # corrupt, truncated, another schema, locked past the timeout, read-only
            raise RunIndexError(f"cannot use the run index {self.path}: {err} (move it aside to start a new "
                                "one; the run directories themselves are intact)") from None
        finally:
            db.close()

    def start(self, run_id: str, path: Path, config: dict[str, Any], *, suite: str | None = None,
              cell: str | None = None) -> None:
        """Insert a new run as "running"."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, path, recipe, head, dataset, backbone, seed, status, started, host, pid, "
                "code_version, config, metrics, suite, cell) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, "
                "'{}', ?, ?)",
                (run_id, str(path), config.get("recipe"), config.get("head"), config.get("dataset"),
                 config.get("backbone"), config.get("seed"), time.time(), socket.gethostname(), os.getpid(),
                 code_version(), json.dumps(config, sort_keys=True), suite, cell),
            )

    def resume(self, run_id: str, config: dict[str, Any] | None = None) -> None:
        """Mark an interrupted run (or a finished one being extended, with its new ``config``) as running again,
        owned by this process."""
        with self._connect() as db:
            db.execute("UPDATE runs SET status = 'running', host = ?, pid = ?, error = NULL, finished = NULL "
                       "WHERE id = ?", (socket.gethostname(), os.getpid(), run_id))
            if config is not None:
                db.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config, sort_keys=True), run_id))

    def finish(self, run_id: str, metrics: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET status = 'finished', finished = ?, metrics = ?, error = NULL WHERE id = ?",
                       (time.time(), json.dumps(metrics, sort_keys=True), run_id))

    def update_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        """Replace the metrics of a run (``featspace eval`` re-evaluating a finished run)."""
        with self._connect() as db:
            db.execute("UPDATE runs SET metrics = ? WHERE id = ?", (json.dumps(metrics, sort_keys=True), run_id))

    def mark(self, run_id: str, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self._connect() as db:
            db.execute("UPDATE runs SET status = ?, error = ?, finished = ? WHERE id = ?",
                       (status, error, time.time(), run_id))

    def get(self, run_id: str) -> RunRecord | None:
        rows = self.query(id=run_id)
        return rows[0] if rows else None

    def query(self, **where: Any) -> list[RunRecord]:
        """Runs whose columns equal the given values (e.g. ``suite="icv-fashion", status="finished"``),
        oldest first. Stale "running" rows (dead process on this host) are reported as "interrupted"."""
        columns = {"id", "recipe", "head", "dataset", "backbone", "seed", "status", "suite", "cell", "path"}
        bad = sorted(set(where) - columns)
        if bad:
            raise ValueError(f"cannot filter runs by {', '.join(bad)}; valid: {', '.join(sorted(columns))}")
        status_filter = where.pop("status", None)
        clause = " AND ".join(f"{key} = ?" for key in where)  # keys checked against a fixed set above
        sql = "SELECT * FROM runs" + (f" WHERE {clause}" if clause else "") + " ORDER BY started"
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(sql, tuple(where.values())).fetchall()
        records = [self._record(row) for row in rows]
        if status_filter is not None:
            records = [r for r in records if r.status == status_filter]
        return records

    def _record(self, row: sqlite3.Row) -> RunRecord:
        values = dict(row)
        values["config"] = json.loads(values["config"] or "{}")
        values["metrics"] = json.loads(values["metrics"] or "{}")
        if values["status"] == "running" and values["host"] == socket.gethostname() and values["pid"] is not None:
            if not _pid_alive(int(values["pid"])):
                values["status"] = "interrupted"  # (a pid reused by an unrelated process hides this; rare)
        return RunRecord(**values)
