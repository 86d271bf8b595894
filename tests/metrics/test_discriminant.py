"""discriminant_score against a literal float64 transcription of 003 Table 1: full scatter matrices,
W from an orthonormalized classifier weight and W_⊥ from scipy.linalg.null_space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from featspace.metrics import classifier_subspace_basis, discriminant_score


def _data(n=80, d=7, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 2
    y = rng.integers(0, c, n)
    return centres[y] + rng.normal(size=(n, d)) * np.linspace(0.5, 2, d), y, rng.normal(size=(c, d))


def reference_ratio(z, y):
    """σ_B/σ_T = tr S_B / tr S_T with S_T = (1/N) Σ (z−μ)(z−μ)ᵀ and S_B = Σ_c (n_c/N)(μ_c−μ)(μ_c−μ)ᵀ."""
    n, d = z.shape
    mu = [sum(z[i][k] for i in range(n)) / n for k in range(d)]
    s_t = np.zeros((d, d))
    for i in range(n):
        v = np.array([z[i][k] - mu[k] for k in range(d)])
        s_t += np.outer(v, v) / n
    s_b = np.zeros((d, d))
    for c in sorted(set(y.tolist())):
        members = [z[i] for i in range(n) if y[i] == c]
        v = np.array([sum(m[k] for m in members) / len(members) - mu[k] for k in range(d)])
        s_b += len(members) / n * np.outer(v, v)
    return np.trace(s_b) / np.trace(s_t)


def test_matches_transcription_in_all_three_spaces():
    x, y, weight = _data()
    result = discriminant_score(x, y, weight=weight)
    basis = scipy.linalg.orth(weight.T)  # orthonormal basis of span of the class weights
    complement = scipy.linalg.null_space(weight)  # W_⊥: WᵀW_⊥ = 0
    assert complement.shape == (7, 4)
    assert result["total"] == pytest.approx(reference_ratio(x, y), rel=1e-10)
    assert result["classifier"] == pytest.approx(reference_ratio(x @ basis, y), rel=1e-10)
    assert result["complement"] == pytest.approx(reference_ratio(x @ complement, y), rel=1e-10)
    assert set(result) == {"total", "classifier", "complement"}
    assert all(0 <= v <= 1 for v in result.values())


def test_independent_of_weight_scale_and_accepts_torch():
    x, y, weight = _data(seed=1)
    a = discriminant_score(x, y, weight=weight)
    b = discriminant_score(torch.from_numpy(x).float(), torch.from_numpy(y), weight=torch.from_numpy(weight * 37).float())
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-5)


def test_rank_deficient_weight_uses_its_true_span():
    x, y, weight = _data(seed=2)
    centred = weight - weight.mean(axis=0)  # rows sum to zero: rank C − 1 = 2
    assert classifier_subspace_basis(centred).shape == (7, 2)
    result = discriminant_score(x, y, weight=centred)
    assert result["classifier"] == pytest.approx(reference_ratio(x @ scipy.linalg.orth(centred.T), y), rel=1e-8)
    assert result["complement"] == pytest.approx(reference_ratio(x @ scipy.linalg.null_space(centred), y), rel=1e-8)


def test_full_rank_classifier_leaves_no_complement():
    x, y, _ = _data(d=3, c=3, seed=3)
    weight = np.random.default_rng(0).normal(size=(4, 3))
    result = discriminant_score(x, y, weight=weight)
    assert result["classifier"] == pytest.approx(result["total"], rel=1e-10)
    assert math.isnan(result["complement"])


def test_features_inside_the_classifier_subspace_have_no_complement_score():
    x, y, weight = _data(seed=4)
    basis = classifier_subspace_basis(weight)
    inside = x @ basis @ basis.T
    assert math.isnan(discriminant_score(inside, y, weight=weight)["complement"])
    assert math.isnan(discriminant_score(np.ones((5, 3)), np.array([0, 0, 1, 1, 1]))["total"])


def test_bad_input_raises():
    x, y, weight = _data()
    with pytest.raises(ValueError):
        discriminant_score(x, y, weight=weight[:, :3])
    with pytest.raises(ValueError):
        discriminant_score(x, y, weight=weight[0])
    with pytest.raises(ValueError):
        discriminant_score(x, y[:3])
