"""``featspace fewshot RUN_DIR``: few-shot evaluation of a trained run (``featspace.train.evaluate_fewshot``),
printed as a table of mean ± 95% CI."""

from __future__ import annotations

import argparse
from typing import Any

from featspace.commands._imports import add_import_option, import_modules
from featspace.commands._output import text_table

__all__ = ["add_parser", "format_report", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fewshot", help="N-way K-shot accuracy of a trained run's frozen backbone on its split's novel classes",
        description="Few-shot evaluation (direct-sum paper, Sec. 3.1): features of the novel classes are extracted "
                    "once, then episodes of WAYS classes x (K support + QUERIES query) samples are classified by "
                    "the nearest class centroid (ncc) and/or LaplacianShot. Writes RUN_DIR/fewshot.json.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5], metavar="K", help="shots per class (default 1 5)")
    p.add_argument("--episodes", type=int, default=10000, help="episodes per setting (default 10000)")
    p.add_argument("--ways", type=int, default=5, help="classes per episode (default 5)")
    p.add_argument("--queries", type=int, default=15, help="queries per class (default 15)")
    # choices are checked by evaluate_fewshot (featspace.metrics.fewshot.METHODS, NORMS) when the command runs
    p.add_argument("--method", default="ncc",
                   help="ncc (inductive, Table 4), laplacianshot (transductive, Table 5) or both (default ncc)")
    p.add_argument("--norm", default="cl2n",
                   help="feature normalization: none, l2, or cl2n = centre by the base-class mean, then L2 "
                        "(default cl2n)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes (default 0)")
    p.add_argument("--lam", type=float, default=1.0, help="LaplacianShot's λ (default 1.0)")
    p.add_argument("--knn", type=int, default=3, help="LaplacianShot's kNN, counting the query itself (default 3)")
    p.add_argument("--rectify", action="store_true", help="LaplacianShot with prototype rectification")
    p.add_argument("--split", default=None, help="evaluate on this few-shot split instead of the run's own")
    p.add_argument("--data-dir", default=None, help="where the split's files are (default: the run's data_dir)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write fewshot.json / metrics.json")
    add_import_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from featspace.metrics.fewshot import METHODS
    from featspace.rundir import RunDir
    from featspace.train import evaluate_fewshot

    import_modules(args.imports)
    methods = list(METHODS) if args.method == "both" else [args.method]
    report = evaluate_fewshot(args.run_dir, shots=args.shots, episodes=args.episodes, ways=args.ways,
                          queries=args.queries, methods=methods, norm=args.norm, seed=args.seed, split=args.split,
                          data_dir=args.data_dir, lam=args.lam, knn=args.knn, rectify=args.rectify,
                          device=args.device, write=not args.no_write)
    print(format_report(report))
    if not args.no_write:
        print(f"\nwritten: {RunDir(args.run_dir).fewshot}")
    return 0


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of a ``fewshot.json`` report: one row per method, one column per K, in %."""
    shots = [str(k) for k in report["shots"]]
    header = ["method", *[f"{report['ways']}-way {k}-shot (%)" for k in shots]]
    rows = [[method, *[f"{100 * by_shots[k]['mean']:.2f} ± {100 * by_shots[k]['ci95']:.2f}" for k in shots]]
            for method, by_shots in report["results"].items()]
    lines = [f"run {report['run']} · split {report['split']} · {report['episodes']} episodes · "
             f"{report['queries']} queries/class · norm {report['norm']} · {report['novel_samples']} novel samples, "
             f"d = {report['feature_dim']}", text_table(header, rows)]
    if report.get("discriminant"):
        scores = report["discriminant"]
        lines.append("discriminant score σ_B/σ_T of the novel features (003 Table 1): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if v is not None))
    return "\n".join(lines)
