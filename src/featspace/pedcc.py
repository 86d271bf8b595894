"""Predefined evenly-distributed class centroids (PEDCC), POD paper 002_ec5345d43eb6f956.txt, Section 2.1.

PEDCC are k unit vectors in R^n placed as far apart as possible; heads fix them as class centres instead of
learning class weights (POD, NaC, Cosine and PEDCC-Loss heads in ``featspace.heads.pod``).

The theorem the paper quotes (Section 2.1 and 3.2, from its ref. [19]): for k ≤ n + 1 there are k unit
vectors with ⟨a_i, a_j⟩ = −1/(k−1) for every i ≠ j — the vertices of a regular simplex, which is the best
possible layout (no k unit vectors can have a smaller maximum pairwise cosine, because
‖Σ a_i‖² = k + Σ_{i≠j} ⟨a_i, a_j⟩ ≥ 0). Their sum is zero.

``generate(k, n, method="exact")`` builds that simplex exactly: the k vertices of the standard simplex in R^k,
centred and written in an orthonormal basis of the (k−1)-dimensional subspace they span (the Helmert basis),
scaled to unit length, then carried into R^n by a seeded random (Haar-distributed) isometry R^{k−1} → R^n.
It is computed in float64 and returned as float32. The authors' code builds the same object (a recursive
regular-simplex construction rotated by a random orthogonal matrix); the earlier PEDCC-Loss paper used a
"physical model" whose result is only approximately a simplex when there are many classes.

For k > n + 1 no exact layout exists. ``method="repulsion"`` then gives an approximate one: seeded random
points on the sphere moved by gradient descent on a smoothed maximum of the pairwise cosines (a
log-sum-exp whose temperature rises during the run), i.e. it minimises the largest pairwise cosine, which is
maximising the smallest angle between centroids (the Tammes problem). It is approximate: it reaches the
optimum for easy cases (regular polygons in 2-D, ±e_i cross-polytopes with max cosine 0 for
n + 1 < k ≤ 2n, the simplex itself when k ≤ n + 1) and gets close for others (12 points in 3-D: 63.4°
icosahedron, max cosine 1/√5). It costs ``steps`` iterations of a k×k Gram matrix, so large k is slow (it
runs once, when a head is built).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["generate", "simplex_cosine"]

_METHODS = ("exact", "repulsion")


def simplex_cosine(num_classes: int) -> float:
    """The pairwise cosine −1/(k−1) of k evenly-distributed unit centroids (k ≤ n + 1), 002 Section 2.1."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return -1.0 / (num_classes - 1)


def _check_sizes(num_classes: int, dim: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")


def _helmert_simplex(num_classes: int) -> Tensor:
    """[k, k−1] float64: unit vectors with pairwise cosine −1/(k−1), summing to zero.

    Row i is the centred standard basis vector e_i − 𝟙/k written in the Helmert orthonormal basis of
    𝟙^⊥ (basis vector j = (1, …, 1, −j, 0, …, 0)/√(j(j+1)) with j ones), scaled by √(k/(k−1)) to unit length.
    """
    k = num_classes
    helmert = torch.zeros(k - 1, k, dtype=torch.float64)
    for j in range(1, k):
        helmert[j - 1, :j] = 1.0
        helmert[j - 1, j] = -float(j)
        helmert[j - 1] /= math.sqrt(j * (j + 1))
    # e_i − 𝟙/k has coordinates helmert[:, i] in this basis because every basis vector is orthogonal to 𝟙.
    return helmert.T * math.sqrt(k / (k - 1))


def _random_isometry(rows: int, cols: int, generator: torch.Generator) -> Tensor:
    """[rows, cols] float64 with orthonormal columns, Haar-distributed (QR of a Gaussian, signs fixed)."""
    gaussian = torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    # Without the sign fix QR's output is not Haar-distributed (LAPACK picks positive/negative diagonals).
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


def _repulsion(num_classes: int, dim: int, generator: torch.Generator, steps: int) -> Tensor:
    """[k, n] float64 unit vectors whose largest pairwise cosine is (approximately) as small as possible."""
    points = torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)
    points = points / points.norm(dim=1, keepdim=True)
    upper = torch.triu(torch.ones(num_classes, num_classes, dtype=torch.bool), diagonal=1)
    # Projected gradient descent on a log-sum-exp of the cosines: the temperature rises geometrically so early
    # steps spread all points (energy-like) and late steps push only on the closest pairs (max-like). The step
    # shrinks with it, since the gradient of LSE_t concentrates on fewer pairs as t grows.
    start_temperature, end_temperature = 5.0, 20000.0
    best, best_max = points.clone(), math.inf
    for step in range(steps):
        progress = step / max(steps - 1, 1)
        temperature = start_temperature * (end_temperature / start_temperature) ** progress
        learning_rate = 0.2 * (1.0 - 0.9 * progress) * math.sqrt(start_temperature / temperature)
        gram = points @ points.T
        largest = float(gram[upper].max())
        if largest < best_max:
            best, best_max = points.clone(), largest
        # ∂/∂c_ij of LSE_t over the pairs i<j is the softmax weight w_ij, and ∂c_ij/∂p_i = p_j, so the
        # gradient with respect to the points is W·P with W the symmetric matrix of pair weights.
        logits = torch.where(upper, temperature * gram, -math.inf)
        weights = torch.softmax(logits.flatten(), dim=0).view_as(gram)
        gradient = (weights + weights.T) @ points
        # Move along the sphere only: drop the radial part of the gradient, then renormalise.
        gradient = gradient - (gradient * points).sum(1, keepdim=True) * points
        scale = gradient.norm(dim=1).max().clamp_min(1e-300)
        points = points - learning_rate * gradient / scale
        points = points / points.norm(dim=1, keepdim=True)
    if float((points @ points.T)[upper].max()) < best_max:
        best = points
    return best


def generate(
    num_classes: int, dim: int, *, seed: int = 0, method: str = "exact", steps: int = 2000
) -> Tensor:
    """Evenly-distributed unit class centroids [num_classes, dim], float32 (002 Section 2.1).

    method="exact" (default): the regular simplex, with pairwise cosine exactly −1/(k−1) and zero sum (to
    float32 rounding), whenever num_classes ≤ dim + 1; otherwise ``ValueError``.
    method="repulsion": an approximate layout for any k and n, minimising the largest pairwise cosine by
    ``steps`` iterations of projected gradient descent (see the module docstring).

    The result depends only on (num_classes, dim, seed, method, steps): the same seed gives the same
    centroids, different seeds give differently rotated ones.
    """
    _check_sizes(num_classes, dim)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}, got {method!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    if method == "exact":
        if num_classes > dim + 1:
            raise ValueError(
                f"exact evenly-distributed centroids exist only for num_classes <= dim + 1 (a regular simplex "
                f"has at most dim + 1 vertices), got num_classes={num_classes} in dim={dim}; use an embedding "
                f"dimension of at least {num_classes - 1}, or pass method='repulsion' for an approximate layout"
            )
        simplex = _helmert_simplex(num_classes)
        isometry = _random_isometry(dim, num_classes - 1, generator)
        return (simplex @ isometry.T).to(torch.float32)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return _repulsion(num_classes, dim, generator, steps).to(torch.float32)
