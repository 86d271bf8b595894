"""Training on Lightning: configs and recipes, the LightningModule, runs and their index, evaluation."""

from featspace.train.config import TrainConfig, apply_overrides, describe_recipe, load_recipe, recipe_names
from featspace.train.runs import DEFAULT_ROOT, RunIndex, RunRecord
from featspace.train.trainer import RunResult, evaluate_run, read_config, train

__all__ = [
    "DEFAULT_ROOT",
    "RunIndex",
    "RunRecord",
    "RunResult",
    "TrainConfig",
    "apply_overrides",
    "describe_recipe",
    "evaluate_run",
    "load_recipe",
    "read_config",
    "recipe_names",
    "train",
]
