"""``featspace bench``: run a suite (a matrix of heads × datasets × backbones × hyperparameters × seeds) as
ordinary runs in the run index, resumably. Suites ship as YAML in ``featspace/suites``."""

from featspace.bench.command import add_bench_command
from featspace.bench.runner import CellPlan, plan_suite, run_suite
from featspace.bench.suite import Cell, Suite, cell_hash, load_suite, suite_names

__all__ = [
    "Cell",
    "CellPlan",
    "Suite",
    "add_bench_command",
    "cell_hash",
    "load_suite",
    "plan_suite",
    "run_suite",
    "suite_names",
]
