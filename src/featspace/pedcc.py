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

For k > n + 1 no simplex exists, and ``method="repulsion"`` gives the layout that minimises the largest
pairwise cosine instead (equivalently maximises the smallest angle between centroids: the Tammes problem):

- for n + 1 < k ≤ 2n the optimum is known in closed form: by Rankin's bound no more than n + 1 unit vectors
  can have all pairwise cosines negative, so the best largest cosine is 0, which the cross-polytope
  e_1, −e_1, e_2, −e_2, … (its first k vertices, randomly rotated) attains; this is returned directly;
- for k > 2n it is found approximately: seeded random points on the sphere moved by projected gradient
  descent on a smoothed maximum of the pairwise cosines (a log-sum-exp whose temperature rises during the
  run; the best iterate is kept). It reaches the known optima to about 3e-4 in cosine in the cases the
  tests check (regular polygons in 2-D; 12 points in 3-D, the icosahedron with largest cosine 1/√5;
  20 points in 3-D, best known angle 47.43°), and finds the simplex itself when asked for k ≤ n + 1.
  Each step costs two k×k×n matrix products, so large k is slow: the default number of
  steps (``default_repulsion_steps``) shrinks from 2000 to 200 as k²·n grows. It runs once, when a head
  is built.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["default_repulsion_steps", "generate", "simplex_cosine"]

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


def _cross_polytope(num_classes: int, dim: int, generator: torch.Generator) -> Tensor:
    """[k, n] float64: e_1, −e_1, e_2, −e_2, … (the first k), randomly rotated. Largest pairwise cosine 0."""
    points = torch.zeros(num_classes, dim, dtype=torch.float64)
    index = torch.arange(num_classes)
    points[index, index // 2] = 1.0 - 2.0 * (index % 2).to(torch.float64)
    return points @ _random_isometry(dim, dim, generator).T


def _repulsion(num_classes: int, dim: int, generator: torch.Generator, steps: int) -> Tensor:
    """[k, n] float64 unit vectors whose largest pairwise cosine is (approximately) as small as possible."""
    points = torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)
    points = points / points.norm(dim=1, keepdim=True)
    upper = torch.triu(torch.ones(num_classes, num_classes, dtype=torch.bool), diagonal=1)
    # Projected gradient descent on a log-sum-exp of the cosines: the temperature rises geometrically so early
    # steps spread all points (energy-like) and late steps push only on the closest pairs (max-like). The step
    # shrinks with it, since the gradient of LSE_t concentrates on fewer pairs as t grows.
    start_temperature, end_temperature = 5.0, 20000.0
    best, best_max = points, math.inf
    for step in range(steps + 1):
        progress = step / max(steps - 1, 1)
        temperature = start_temperature * (end_temperature / start_temperature) ** min(progress, 1.0)
        learning_rate = 0.2 * (1.0 - 0.9 * min(progress, 1.0)) * math.sqrt(start_temperature / temperature)
        logits = torch.where(upper, temperature * (points @ points.T), -math.inf)
        largest = float(logits.max()) / temperature
        if largest < best_max:
            best, best_max = points, largest
        if step == steps:  # the last iterate has been scored; no further move
            break
        # ∂/∂c_ij of LSE_t over the pairs i<j is the softmax weight w_ij, and ∂c_ij/∂p_i = p_j, so the
        # gradient with respect to the points is W·P with W the symmetric matrix of pair weights.
        weights = torch.softmax(logits.flatten(), dim=0).view_as(logits)
        gradient = (weights + weights.T) @ points
        # Move along the sphere only: drop the radial part of the gradient, then renormalise.
        gradient = gradient - (gradient * points).sum(1, keepdim=True) * points
        scale = gradient.norm(dim=1).max().clamp_min(1e-300)
        points = points - learning_rate * gradient / scale
        points = points / points.norm(dim=1, keepdim=True)
    return best


def default_repulsion_steps(num_classes: int, dim: int) -> int:
    """Iterations ``generate(method="repulsion")`` runs by default: 2000, fewer (down to 200) when k²·n is
    large, so that one layout costs about 10¹¹ floating-point operations at most (each step is two k×k×n
    matrix products)."""
    return int(min(2000, max(200, 2.5e10 // (num_classes * num_classes * dim))))


def generate(
    num_classes: int, dim: int, *, seed: int = 0, method: str = "exact", steps: int | None = None
) -> Tensor:
    """Evenly-distributed unit class centroids [num_classes, dim], float32 (002 Section 2.1).

    method="exact" (default): the regular simplex, with pairwise cosine exactly −1/(k−1) and zero sum (to
    float32 rounding), whenever num_classes ≤ dim + 1; otherwise ``ValueError``.
    method="repulsion": a layout for any k and n that minimises the largest pairwise cosine: the exact optimum
    in closed form for n + 1 < k ≤ 2n (cross-polytope), otherwise approximately, by ``steps`` iterations of
    projected gradient descent (default ``default_repulsion_steps(k, n)``; see the module docstring).

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
    if steps is None:
        steps = default_repulsion_steps(num_classes, dim)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if dim + 1 < num_classes <= 2 * dim:
        return _cross_polytope(num_classes, dim, generator).to(torch.float32)
    return _repulsion(num_classes, dim, generator, steps).to(torch.float32)
