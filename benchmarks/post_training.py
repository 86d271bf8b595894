"""What a run costs after its training: the evaluation and the figures, t-SNE included, against its training time.

    .venv/bin/python benchmarks/post_training.py                       # trains icv-fashion (20 epochs) first
    .venv/bin/python benchmarks/post_training.py --run runs/RUN_DIR    # a finished run instead

The work measured is what ``featspace train`` does once the fit has ended:
``featspace.train.evaluate.evaluate_and_save`` (embed the training and test splits, every metric, the run's
files) and ``featspace.report.run_figures.draw_run_figures`` (every figure, the t-SNE included), each stage timed
by the functions' own ``timings``. The trained model is loaded from the run's checkpoint first (not counted:
the training process has it in memory). The first repeat is cold as in a training process (matplotlib, openTSNE
and the figures' fonts load during it); the others are warm. The run's ``train_seconds`` (the fit alone, from
its metrics.json) is the baseline: the issue's target is post-training ≤ 0.10 × training. Prints a table and
writes JSON (``--out``, default ``benchmarks/results/post_training.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from featspace import __version__
from featspace.io import write_json


def _train(recipe: str, root: Path) -> Path:
    from featspace.config import load_recipe
    from featspace.train import train

    print(f"training {recipe} under {root} (a few minutes on a CPU) ...", flush=True)
    return train(load_recipe(recipe), root=root, progress=False).path


def _measure(run: Path) -> dict[str, float]:
    from featspace.report.run_figures import draw_run_figures
    from featspace.rundir import RunDir
    from featspace.train.evaluate import TRAINING_KEYS, evaluate_and_save
    from featspace.train.parts import load_trained

    rundir = RunDir(run)
    module, datamodule, _ = load_trained(rundir.path)
    kept = {k: v for k, v in (rundir.read_metrics() or {}).items() if k in TRAINING_KEYS}
    timings: dict[str, float] = {}
    evaluate_and_save(module, datamodule, module.config, rundir, kept, timings=timings)
    figures: dict[str, float] = {}
    draw_run_figures(rundir.path, tsne=True, timings=figures)
    timings.update({f"figure {name}": seconds for name, seconds in figures.items()})
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished run directory (default: train one)")
    parser.add_argument("--recipe", default="icv-fashion", help="the recipe trained without --run")
    parser.add_argument("--root", type=Path, default=None, help="where to train (default: a temporary directory)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements; the first is the cold one")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "post_training.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or _train(args.recipe, args.root or Path(scratch))
        from featspace.rundir import RunDir

        train_seconds = float((RunDir(run).read_metrics() or {})["train_seconds"])
        repeats = [_measure(run) for _ in range(args.repeats)]
    stages = list(repeats[0])
    cold = repeats[0]
    warm = {s: statistics.median(r[s] for r in repeats[1:]) for s in stages} if len(repeats) > 1 else cold
    print(f"\nrun {Path(run).name}: training {train_seconds:.1f} s\n")
    print(f"{'stage':<34} {'cold s':>8} {'warm s':>8}")
    for stage in stages:
        print(f"{stage:<34} {cold[stage]:>8.2f} {warm[stage]:>8.2f}")
    total_cold, total_warm = sum(cold.values()), sum(warm.values())
    print(f"{'total':<34} {total_cold:>8.2f} {total_warm:>8.2f}")
    print(f"{'× training':<34} {total_cold / train_seconds:>8.3f} {total_warm / train_seconds:>8.3f}   (target ≤ 0.10)")
    meta = {"featspace": __version__, "run": Path(run).name, "machine": platform.machine(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"), "train_seconds": train_seconds, "repeats": args.repeats,
            "warm": "median of the repeats after the first"}
    write_json(args.out, {"meta": meta, "cold": cold, "warm": warm, "total_cold": total_cold,
                          "total_warm": total_warm, "ratio_cold": total_cold / train_seconds,
                          "ratio_warm": total_warm / train_seconds})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
