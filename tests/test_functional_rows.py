"""Row-wise basics (featspace.functional.rows) against literal float64 loops: unit rows, squared distances,
class sums and means, nearest centroid; with leading batch dimensions, absent classes and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from featspace.functional import class_means, class_sums, nearest_centroid, normalize_rows, squared_distances


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def literal_unit(row):
    norm = math.sqrt(sum(float(v) ** 2 for v in row))
    return torch.tensor([float(v) / max(norm, 1e-12) for v in row], dtype=torch.float64)


def literal_squared_distance(u, v):
    return sum((float(a) - float(b)) ** 2 for a, b in zip(u, v))


def test_normalize_rows_of_any_leading_shape_matches_a_loop():
    t = _randn(2, 3, 4, seed=1)
    t[1, 2] = 0.0  # a zero row stays zero
    out = normalize_rows(t)
    assert out.shape == t.shape
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], literal_unit(t[i, j]))
    assert torch.equal(out[1, 2], torch.zeros(4, dtype=torch.float64))
    x = _randn(3, 4, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: normalize_rows(a.reshape(1, 3, 4)), (x,))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_squared_distances_match_a_loop_with_and_without_given_norms(batch):
    a, b = _randn(*batch, 4, 5, seed=3), _randn(*batch, 6, 5, seed=4)
    out = squared_distances(a, b)
    assert out.shape == (*batch, 4, 6)
    flat_a, flat_b, flat_out = a.reshape(-1, 4, 5), b.reshape(-1, 6, 5), out.reshape(-1, 4, 6)
    for e in range(flat_a.shape[0]):
        for i in range(4):
            for j in range(6):
                assert float(flat_out[e, i, j]) == pytest.approx(literal_squared_distance(flat_a[e, i], flat_b[e, j]),
                                                                 rel=1e-12)
    given = squared_distances(a, b, a_squared_norms=(a * a).sum(-1), b_squared_norms=(b * b).sum(-1))
    torch.testing.assert_close(given, out)
    assert (squared_distances(a, a).diagonal(dim1=-2, dim2=-1) >= 0).all()  # clamped, never negative


def test_squared_distances_gradients():
    a, b = _randn(3, 4, seed=5).requires_grad_(), _randn(2, 4, seed=6).requires_grad_()
    assert torch.autograd.gradcheck(squared_distances, (a, b))


def test_class_sums_and_means_match_a_loop():
    x = _randn(9, 3, seed=7)
    y = torch.tensor([0, 2, 2, 0, 4, 2, 0, 4, 2])  # classes 1 and 3 are absent
    sums, counts = class_sums(x, y, 5)
    means, mean_counts = class_means(x, y, 5)
    assert torch.equal(counts, mean_counts) and counts.dtype == torch.float64
    for c in range(5):
        members = [x[i] for i in range(9) if int(y[i]) == c]
        assert float(counts[c]) == len(members)
        expected_sum = sum(members) if members else torch.zeros(3, dtype=torch.float64)
        torch.testing.assert_close(sums[c], expected_sum)
        # a class without samples: a zero mean, to be masked by its count
        torch.testing.assert_close(means[c], expected_sum / max(len(members), 1))
    w = x.clone().requires_grad_()
    class_means(w, y, 5)[0].sum().backward()
    expected_grad = torch.stack([torch.full((3,), 1.0 / float(counts[int(c)]), dtype=torch.float64) for c in y])
    torch.testing.assert_close(w.grad, expected_grad)
    # half precision embeddings still count exactly
    assert class_sums(torch.ones(300, 2, dtype=torch.bfloat16), torch.zeros(300, dtype=torch.long), 1)[1].item() == 300


def literal_nearest(x, centroids):
    distances = [literal_squared_distance(x, c) if torch.isfinite(c).all() else math.inf for c in centroids]
    return distances.index(min(distances))


def test_nearest_centroid_matches_a_loop_batched_and_skips_absent_rows():
    x, centroids = _randn(2, 7, 4, seed=8), _randn(2, 5, 4, seed=9)
    centroids[0, 1] = float("nan")  # an absent class (as featspace.metrics.class_means marks it)
    predicted = nearest_centroid(x, centroids)
    assert predicted.shape == (2, 7)
    for e in range(2):
        for i in range(7):
            assert int(predicted[e, i]) == literal_nearest(x[e, i], centroids[e])
    assert not (predicted[0] == 1).any()
    # a sample sitting on the absent class's would-be position still goes to a present one
    assert int(nearest_centroid(torch.zeros(1, 4, dtype=torch.float64), centroids[0])[0]) != 1
