"""featspace.pedcc: exact simplex centroids (002 Section 2.1) and the approximate repulsion layout."""

from __future__ import annotations

import math

import pytest
import torch

from featspace import pedcc


def pairwise_cosines(points: torch.Tensor) -> torch.Tensor:
    """Off-diagonal cosines of the rows, in float64, as a flat vector (literal double loop)."""
    p = points.double()
    values = []
    for i in range(p.shape[0]):
        for j in range(p.shape[0]):
            if i != j:
                values.append(torch.dot(p[i], p[j]) / (p[i].norm() * p[j].norm()))
    return torch.stack(values)


@pytest.mark.parametrize("k, d", [(2, 1), (2, 5), (3, 2), (4, 3), (5, 4), (10, 9), (10, 256), (7, 7), (11, 40)])
def test_exact_layout_properties(k, d):
    points = pedcc.generate(k, d, seed=3)
    assert points.shape == (k, d) and points.dtype == torch.float32
    torch.testing.assert_close(points.double().norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6, rtol=0)
    cosines = pairwise_cosines(points)
    torch.testing.assert_close(cosines, torch.full_like(cosines, -1.0 / (k - 1)), atol=1e-6, rtol=0)
    torch.testing.assert_close(points.double().sum(0), torch.zeros(d, dtype=torch.float64), atol=1e-6, rtol=0)
    assert pedcc.simplex_cosine(k) == -1.0 / (k - 1)


def test_two_classes_are_antipodal():
    a, b = pedcc.generate(2, 6, seed=0)
    torch.testing.assert_close(a, -b)


def test_k_equals_d_plus_one_fills_the_space():
    points = pedcc.generate(6, 5, seed=1).double()
    assert torch.linalg.matrix_rank(points) == 5  # k − 1 = d: the simplex spans all of R^d


def test_spans_k_minus_one_dimensions_when_d_is_larger():
    points = pedcc.generate(4, 50, seed=1).double()
    assert torch.linalg.matrix_rank(points, atol=1e-5) == 3


def test_deterministic_for_a_seed_and_different_across_seeds():
    torch.manual_seed(123)  # the global RNG must play no part
    a = pedcc.generate(10, 64, seed=7)
    torch.manual_seed(999)
    b = pedcc.generate(10, 64, seed=7)
    assert torch.equal(a, b)
    c = pedcc.generate(10, 64, seed=8)
    assert not torch.allclose(a, c, atol=1e-3)
    torch.testing.assert_close(pairwise_cosines(c), pairwise_cosines(a), atol=1e-6, rtol=0)  # both simplices
    assert torch.equal(pedcc.generate(10, 64), pedcc.generate(10, 64, seed=0))


def test_rotation_is_random_not_axis_aligned():
    points = pedcc.generate(5, 30, seed=2)
    # A random isometry spreads every centroid over all coordinates instead of a fixed block of them.
    assert (points.abs() > 1e-4).float().mean() > 0.9


def test_too_many_classes_raises_and_names_the_option():
    with pytest.raises(ValueError, match=r"num_classes <= dim \+ 1") as info:
        pedcc.generate(12, 3)
    assert "repulsion" in str(info.value) and "11" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1, "dim": 3}, "num_classes"),
        ({"num_classes": 3, "dim": 0}, "dim"),
        ({"num_classes": 3.0, "dim": 4}, "num_classes"),
        ({"num_classes": 3, "dim": 4, "method": "physical"}, "method"),
        ({"num_classes": 3, "dim": 4, "seed": 1.5}, "seed"),
        ({"num_classes": 3, "dim": 4, "method": "repulsion", "steps": 0}, "steps"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pedcc.generate(**kwargs)


@pytest.mark.parametrize(
    "k, d, optimum",
    [
        (7, 2, math.cos(2 * math.pi / 7)),  # regular heptagon
        (12, 3, 1 / math.sqrt(5)),  # icosahedron, the Tammes optimum for 12 points
        (6, 3, 0.0),  # octahedron ±e_i; by Rankin's bound no more than d + 1 points have all cosines < 0
        (8, 4, 0.0),  # cross-polytope in R^4
        (5, 4, -0.25),  # k <= d + 1: repulsion should find the simplex too
    ],
)
def test_repulsion_reaches_the_known_optimum(k, d, optimum):
    points = pedcc.generate(k, d, seed=0, method="repulsion", steps=1000)
    assert points.shape == (k, d) and points.dtype == torch.float32
    torch.testing.assert_close(points.double().norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6, rtol=0)
    largest = float(pairwise_cosines(points).max())
    assert largest >= optimum - 1e-5, "no layout beats the optimum; the check itself would be wrong"
    assert largest <= optimum + 2e-3, (largest, optimum)


@pytest.mark.parametrize("k, d", [(5, 3), (6, 3), (1000, 512)])
def test_between_d_plus_1_and_2d_the_cross_polytope_optimum_is_returned(k, d):
    points = pedcc.generate(k, d, seed=5, method="repulsion").double()
    torch.testing.assert_close(points.norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6, rtol=0)
    gram = points @ points.T
    off_diagonal = gram[~torch.eye(k, dtype=torch.bool)]
    assert float(off_diagonal.max()) <= 1e-6  # Rankin: no k > d + 1 unit vectors have all cosines < 0
    pairs = torch.arange(k) ^ 1  # rows 2i and 2i + 1 are antipodal
    has_partner = pairs < k
    torch.testing.assert_close(points[has_partner], -points[pairs[has_partner]], atol=1e-6, rtol=0)
    assert not torch.equal(pedcc.generate(k, d, seed=6, method="repulsion"), points.float())


def test_default_repulsion_steps_shrink_with_size():
    assert pedcc.default_repulsion_steps(12, 3) == 2000
    assert pedcc.default_repulsion_steps(5000, 512) == 200
    assert 200 <= pedcc.default_repulsion_steps(600, 100) < 2000


def test_repulsion_beats_random_points_and_is_deterministic():
    points = pedcc.generate(20, 3, seed=4, method="repulsion", steps=400)
    again = pedcc.generate(20, 3, seed=4, method="repulsion", steps=400)
    assert torch.equal(points, again)
    random = torch.nn.functional.normalize(torch.randn(20, 3, generator=torch.Generator().manual_seed(4)), dim=1)
    assert float(pairwise_cosines(points).max()) < float(pairwise_cosines(random).max()) - 0.2
    # Tammes problem for 20 points on the 2-sphere: the best known smallest angle is 47.431°.
    assert float(pairwise_cosines(points).max()) < math.cos(math.radians(47.431)) + 2e-3
