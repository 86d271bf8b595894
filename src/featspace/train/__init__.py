"""Training on Lightning: the fit (``fit``), a run's bookkeeping (``run``), the trained model's parts
(``parts``), its evaluation (``evaluate``), few-shot evaluation (``fewshot``), inference (``inference``:
``load_run``), embeddings of new images or a split (``embedding``) and experiment tracking (``tracking``)."""

from featspace.config import TrainConfig, apply_overrides, describe_recipe, load_recipe, recipe_names
from featspace.train.embedding import Embedded, embed_files, embed_split
from featspace.train.evaluate import evaluate_run
from featspace.train.fewshot import evaluate_fewshot
from featspace.train.inference import TrainedRun, load_run
from featspace.train.parts import build_parts, load_trained
from featspace.train.run import RunResult, train

__all__ = [
    "Embedded",
    "RunResult",
    "TrainedRun",
    "TrainConfig",
    "apply_overrides",
    "build_parts",
    "describe_recipe",
    "embed_files",
    "embed_split",
    "evaluate_fewshot",
    "evaluate_run",
    "load_recipe",
    "load_run",
    "load_trained",
    "recipe_names",
    "train",
]
