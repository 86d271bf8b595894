"""``featspace bench``: run a suite (``featspace.suite``: a matrix of heads × datasets × backbones ×
hyperparameters × seeds) as ordinary runs in the run index, resumably."""

from featspace.bench.runner import CellPlan, plan_suite, run_suite, train_and_draw

__all__ = ["CellPlan", "plan_suite", "run_suite", "train_and_draw"]
