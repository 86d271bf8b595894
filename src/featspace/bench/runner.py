"""``run_suite``: run every cell of a suite as an ordinary run in the index, resumably.

For each cell, in order (the first seed of every configuration, then the second, ...):

- a "finished" run of (suite, cell) exists in the index: skip the cell, never run it twice;
- a run of the cell is "running" in a live process (another bench on this host): skip it for now;
- an interrupted run (killed, Ctrl-C, SIGTERM, or "running" with a dead pid) with a checkpoint: resume it
  with ``train(resume=run_dir)``, which continues from its last epoch and reaches the same metrics;
- an interrupted run without a checkpoint (killed in its first epoch), a failed run, or none: train afresh.
  The old row stays in the index as it was, so nothing is ever lost; reports read finished rows only.

Every run's figures are drawn after its training (``featspace.report.run_figures``). A suite with a ``fewshot``
section (see ``featspace.suite``) has every run evaluated by ``featspace.train.evaluate_fewshot`` right after its
training. A finished run whose few-shot numbers are missing
(killed during the evaluation, trained before the section was added, its ``metrics.json`` rewritten by
``featspace eval``) or were measured with other settings (``fewshot.json`` records them) is planned as
"fewshot": the next bench evaluates its checkpoint again without retraining. A failed evaluation is reported
like a failed run; the run stays finished and the next invocation tries again.

A per-cell lock file (``<root>/.locks/<suite>/<cell>.lock``, ``fcntl.flock``, released by the kernel when its
process dies however it dies) keeps two benches started at once from training the same cell twice.

A failed run does not stop the bench: it is reported, the next cell runs, and the failure is in the index
(status "failed" with its error). KeyboardInterrupt and SystemExit stop the bench; ``train`` has then
marked the current run "interrupted" and the next invocation resumes it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from featspace.report.run_figures import draw_run_figures
from featspace.rundir import DEFAULT_ROOT, RunDir, RunIndex, RunRecord
from featspace.suite import Cell, Suite, load_suite
from featspace.train import evaluate_fewshot, fewshot, train
from featspace.train.run import RunResult

__all__ = ["run_suite", "plan_suite", "CellPlan", "format_duration", "needs_fewshot", "train_and_draw"]

TrainFn = Callable[..., Any]
FewshotFn = Callable[..., Any]


@dataclass
class CellPlan:
    """What the bench will do with one cell: "skip" (finished), "busy" (running elsewhere), "resume" (from
    ``record``'s checkpoint), "train" (a fresh run) or "fewshot" (finished, but its few-shot evaluation is
    missing or stale: evaluate ``record``'s checkpoint, no training)."""

    cell: Cell
    action: str
    record: RunRecord | None


def train_and_draw(config: Any = None, **kwargs: Any) -> RunResult:
    """``featspace.train.train``, then the run's figures (what a bench runs for each cell by default)."""
    result = train(config, **kwargs)
    if result.metrics:
        result.plots = draw_run_figures(result.path)
    return result


def needs_fewshot(record: RunRecord, settings: dict[str, Any]) -> bool:
    """Whether a finished run (its index row) lacks the few-shot numbers a suite's ``fewshot`` section asks for
    (``featspace.train.fewshot.needs_fewshot``)."""
    return fewshot.needs_fewshot(RunDir(record.path), record.metrics or {}, settings)


def plan_cell(index: RunIndex, suite_name: str, cell: Cell, fewshot: dict[str, Any] | None = None) -> CellPlan:
    """Decide what to do with one cell from the index's rows for (suite, cell); ``fewshot``: the suite's
    few-shot settings (None: the suite has no few-shot evaluation)."""
    records = index.query(suite=suite_name, cell=cell.key)
    finished = [r for r in records if r.status == "finished"]
    if finished:
        if fewshot is not None and needs_fewshot(finished[-1], fewshot):
            return CellPlan(cell, "fewshot", finished[-1])
        return CellPlan(cell, "skip", finished[-1])
    running = [r for r in records if r.status == "running"]
    if running:
        return CellPlan(cell, "busy", running[-1])
    resumable = [r for r in records if r.status == "interrupted" and RunDir(r.path).last_checkpoint.is_file()
                 and RunDir(r.path).is_run()]
    if resumable:
        return CellPlan(cell, "resume", resumable[-1])
    return CellPlan(cell, "train", records[-1] if records else None)


def plan_suite(suite: str | Path | Suite, *, seeds: int | list[int] | None = None,
               overrides: list[str] | tuple[str, ...] = (), root: str | Path = DEFAULT_ROOT) -> list[CellPlan]:
    """What ``run_suite`` would do with every cell, without running anything."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    index = RunIndex(root)
    return [plan_cell(index, suite.name, cell, suite.fewshot)
            for cell in suite.expand(seeds=seeds, overrides=list(overrides))]


@contextmanager
def _cell_lock(root: Path, suite_name: str, cell_key: str) -> Iterator[bool]:
    """Hold an exclusive, non-blocking lock on the cell; yields False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the index's "running" status is the only guard
        yield True
        return
    safe_suite = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in suite_name)
    lock_dir = root / ".locks" / safe_suite
    lock_dir.mkdir(parents=True, exist_ok=True)
    handle = open(lock_dir / f"{cell_key}.lock", "a")  # noqa: SIM115  (held open for the whole run)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def format_duration(seconds: float) -> str:
    """An ETA, rounded up to the minute: ``"44 min"``, ``"2 h 08 min"`` (never ``00:44``, which reads as seconds)."""
    minutes = max(0, int(-(-seconds // 60)))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _describe(cell: Cell) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in cell.labels.items())
    return f"{cell.key} ({labels}{', ' if labels else ''}seed={cell.seed})"


def run_suite(suite: str | Path | Suite, *, seeds: int | list[int] | None = None,
              overrides: list[str] | tuple[str, ...] = (), root: str | Path = DEFAULT_ROOT,
              train_fn: TrainFn | None = None, fewshot_fn: FewshotFn | None = None, progress: bool = True,
              stream: TextIO | None = None) -> list[RunRecord]:
    """Run every cell of ``suite`` (a shipped name, a YAML path or a :class:`Suite`) that has not finished.

    seeds: a count (seeds 0..N-1) or a list; default: the suite's. overrides: ``key=value`` strings applied
    to every cell (they change the cell keys, so a bench with ``--set max_epochs=1`` is a different set of
    runs from the default one). root: the run root and its index. train_fn: :func:`train_and_draw` by
    default; any callable with ``featspace.train.train``'s signature. fewshot_fn: ``featspace.train.evaluate_fewshot``
    by default, called as ``fewshot_fn(run_dir, **suite.fewshot)`` after each run of a suite with a ``fewshot``
    section and for finished runs that lack its numbers. progress: one line per cell on ``stream``
    (stderr by default) with an ETA from the runs trained in this invocation (or the suite's
    ``minutes_per_run`` before the first finishes); the runs' own progress bars only on a terminal.

    Returns the latest index row of every cell in cell order (finished, or the failed/interrupted row of a
    cell that did not finish). The module docstring gives the skip/resume rules.
    """
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    train_fn = train_fn or train_and_draw
    fewshot_fn = fewshot_fn or evaluate_fewshot
    root = Path(root)
    stream = stream if stream is not None else sys.stderr
    cells = suite.expand(seeds=seeds, overrides=list(overrides))
    index = RunIndex(root)
    total = len(cells)

    def say(message: str) -> None:
        if progress:
            print(message, file=stream, flush=True)

    plans = [plan_cell(index, suite.name, cell, suite.fewshot) for cell in cells]
    to_run = sum(p.action in ("train", "resume") for p in plans)
    to_evaluate = sum(p.action == "fewshot" for p in plans)
    say(f"bench {suite.name}: {total} cells, {total - to_run - to_evaluate} finished or running elsewhere, "
        f"{to_run} to run" + (f", {to_evaluate} to evaluate (few-shot)" if to_evaluate else "") + f" under {root}")

    def evaluate(prefix: str, record: RunRecord) -> bool:
        """The suite's few-shot evaluation of a finished run; False (reported) when it fails."""
        assert fewshot_fn is not None and suite.fewshot is not None
        say(f"{prefix}: few-shot evaluation of {record.id} ...")
        started = time.time()
        try:
            fewshot_fn(record.path, **suite.fewshot)
        except (KeyboardInterrupt, SystemExit):
            say(f"{prefix}: few-shot evaluation interrupted; the next bench evaluates it again")
            raise
        except Exception as err:  # the run stays finished; the next invocation evaluates it again
            say(f"{prefix}: few-shot evaluation FAILED after {time.time() - started:.0f} s: "
                f"{type(err).__name__}: {err}")
            return False
        say(f"{prefix}: few-shot evaluation done in {time.time() - started:.0f} s")
        return True

    durations: list[float] = []
    remaining = to_run
    failures = 0
    bar = progress and hasattr(stream, "isatty") and stream.isatty()
    for number, plan in enumerate(plans, start=1):
        cell = plan.cell
        prefix = f"[{number}/{total}] {suite.name} {_describe(cell)}"
        if plan.action == "skip":
            say(f"{prefix}: finished earlier ({plan.record.id if plan.record else ''}), skipped")
            continue
        if plan.action == "busy":
            say(f"{prefix}: running in another process ({plan.record.id if plan.record else ''}), skipped")
            continue
        counted = plan.action in ("train", "resume")  # counted in `remaining`, the runs the ETA is about
        with _cell_lock(root, suite.name, cell.key) as locked:
            if not locked:
                say(f"{prefix}: locked by another bench, skipped")
                remaining -= counted
                continue
            # re-read under the lock: another bench may have finished (or evaluated) it
            plan = plan_cell(index, suite.name, cell, suite.fewshot)
            if plan.action == "fewshot" and plan.record is not None:
                remaining -= counted
                if not evaluate(prefix, plan.record):
                    failures += 1
                continue
            if plan.action in ("skip", "busy"):
                say(f"{prefix}: {'finished' if plan.action == 'skip' else 'started'} by another bench, skipped")
                remaining -= 1
                continue
            if durations:
                eta = sum(durations) / len(durations) * remaining
            elif suite.minutes_per_run:
                eta = suite.minutes_per_run * 60 * remaining
            else:
                eta = None
            what = f"resuming {plan.record.id}" if plan.action == "resume" and plan.record else "training"
            say(f"{prefix}: {what} ... ETA {format_duration(eta) if eta is not None else 'unknown'}")
            started = time.time()
            try:
                if plan.action == "resume" and plan.record is not None:
                    train_fn(resume=plan.record.path, suite=suite.name, cell=cell.key, progress=bar)
                else:
                    train_fn(cell.config, root=root, suite=suite.name, cell=cell.key, progress=bar)
            except (KeyboardInterrupt, SystemExit):
                say(f"{prefix}: interrupted; run the same bench again to resume it")
                raise
            except Exception as err:  # a failed run is in the index; the bench goes on with the next cell
                failures += 1
                say(f"{prefix}: FAILED after {time.time() - started:.0f} s: {type(err).__name__}: {err}")
            else:
                durations.append(time.time() - started)
                say(f"{prefix}: done in {time.time() - started:.0f} s")
                after = plan_cell(index, suite.name, cell, suite.fewshot)
                if after.action == "fewshot" and after.record is not None and not evaluate(prefix, after.record):
                    failures += 1
            remaining -= 1

    results = []
    for cell in cells:
        plan = plan_cell(index, suite.name, cell, suite.fewshot)
        if plan.record is not None:
            results.append(plan.record)
    finished = sum(r.status == "finished" for r in results)
    unevaluated = 0
    if suite.fewshot is not None:
        unevaluated = sum(r.status == "finished" and needs_fewshot(r, suite.fewshot) for r in results)
    say(f"bench {suite.name}: {finished}/{total} cells finished" + (f", {failures} failed" if failures else "")
        + (f", {unevaluated} without their few-shot evaluation" if unevaluated else ""))
    return results
