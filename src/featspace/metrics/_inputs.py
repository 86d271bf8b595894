"""Conversion and validation shared by the metric functions.

Every metric accepts torch tensors (any device, any floating dtype, with or without grad) or numpy arrays
and works in float64 numpy: a metric is computed once per evaluation, so precision matters more than speed,
and bf16/fp16 embeddings would round cosines near 1 to exactly 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featspace.functional import normalize_rows

ArrayLike = Any  # torch.Tensor | np.ndarray | nested sequences


def to_numpy(values: ArrayLike) -> np.ndarray:
    """A numpy view/copy of ``values``; torch tensors are detached and moved to the CPU."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu()
        if values.dtype.is_floating_point and values.element_size() < 4:
            values = values.float()  # numpy has no bfloat16
        values = values.numpy()
    return np.asarray(values)


def embeddings_array(embeddings: ArrayLike, name: str = "embeddings", *, min_rows: int = 1) -> np.ndarray:
    """``embeddings`` as a finite float64 array [N, d]; ``ValueError`` otherwise."""
    array = to_numpy(embeddings)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [N, d], got shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {array.shape[0]}")
    if array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(array.shape)}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def labels_array(labels: ArrayLike, num_rows: int, name: str = "labels") -> np.ndarray:
    """``labels`` as a non-negative int64 array [N] matching ``num_rows``; ``ValueError`` otherwise."""
    array = to_numpy(labels)
    if array.ndim != 1 or array.shape[0] != num_rows:
        raise ValueError(f"{name} must have shape [{num_rows}], got shape {tuple(array.shape)}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0)):
            raise ValueError(f"{name} must be integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative class indices, got {array.min()}")
    return array


def check_num_classes(labels: np.ndarray, num_classes: int, name: str = "labels") -> None:
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes}), got {labels.max()}")


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory where it can, to hand a validated array to ``featspace.functional``
    (``torch.from_numpy`` refuses negative strides, e.g. of ``x[::-1]``, so those are copied)."""
    return torch.from_numpy(np.ascontiguousarray(array))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of a float64 array [N, d] scaled to unit L2 norm, by ``featspace.functional.normalize_rows`` (the one
    implementation heads and metrics share): a zero row stays zero, so its cosine with everything is 0."""
    return normalize_rows(as_tensor(x.astype(np.float64, copy=False))).numpy()
