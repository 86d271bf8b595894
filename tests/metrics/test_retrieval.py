"""Retrieval metrics against a literal transcription of their definitions (Musgrave et al., ECCV 2020)."""

from __future__ import annotations

import numpy as np
import pytest

from featspace.metrics import evaluate, retrieval_metrics


def _literal(x: np.ndarray, y: np.ndarray, metric: str) -> dict[str, float]:
    """Per query: every other sample ranked by a full sort, then the definitions term by term."""
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    per_query: dict[str, list[float]] = {}
    for q in range(len(x)):
        others = [j for j in range(len(x)) if j != q]
        if metric == "cosine":
            order = sorted(others, key=lambda j: -float(x[q] @ x[j]))
        else:
            order = sorted(others, key=lambda j: float(((x[q] - x[j]) ** 2).sum()))
        rel = [1.0 if y[j] == y[q] else 0.0 for j in order]
        r = int(sum(y[j] == y[q] for j in others))
        if r == 0:
            continue  # a lone query has no answer
        values = {"precision_at_1": rel[0], "r_precision": sum(rel[:r]) / r,
                  "mean_average_precision_at_r": sum(sum(rel[:i]) / i * rel[i - 1] for i in range(1, r + 1)) / r}
        for k in (1, 2, 4, 8):
            values[f"recall_at_{k}"] = 1.0 if any(rel[:k]) else 0.0
        for key, value in values.items():
            per_query.setdefault(key, []).append(value)
    suffix = "_cosine" if metric == "cosine" else ""
    return {key + suffix: float(np.mean(v)) for key, v in per_query.items()}


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("block", [10_000_000, 37])  # one block, and rows of 1 (37 // 40 entries per row)
def test_retrieval_matches_the_literal_definitions(metric, block):
    rng = np.random.default_rng(0)
    y = np.concatenate([np.repeat(np.arange(4), [9, 6, 3, 1]), rng.integers(0, 4, 21)])  # class 3 nearly lone
    x = rng.normal(size=(len(y), 5)) + 0.8 * np.eye(5)[y]
    got = retrieval_metrics(x, y, metric=metric, max_block_entries=block)
    want = _literal(x, y, metric)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_lone_queries_are_left_out_and_perfect_clusters_score_one():
    y = np.array([0, 0, 0, 1, 1, 2])  # the one sample of class 2 is a lone query
    x = np.array([[0.0, 0], [0, 0.1], [0.1, 0], [10, 10], [10, 10.1], [-50, 3]])
    got = retrieval_metrics(x, y)
    assert all(v == 1.0 for v in got.values()), got
    assert np.isnan(retrieval_metrics(np.eye(3), [0, 1, 2])["precision_at_1"])


def test_evaluate_reports_retrieval_in_both_spaces():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 40)
    x = rng.normal(size=(40, 4)) + 2 * np.eye(4)[y]
    out = evaluate(x, y, x, y)
    for key in ("precision_at_1", "r_precision", "mean_average_precision_at_r", "recall_at_8",
                "precision_at_1_cosine", "mean_average_precision_at_r_cosine"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["precision_at_1"] == pytest.approx(retrieval_metrics(x, y)["precision_at_1"])
