"""nca_loss and proto_loss against literal float64 transcriptions of 003 eq. (4) and eq. (3), leave-one-out."""

from __future__ import annotations

import math

import pytest
import torch

from featspace.functional import nca_loss, proto_loss, squared_distances
from featspace.functional.metric import _proto_loss_over_classes


def literal_nca(x, y):
    """003 eq. 4, sample by sample: −log Σ_{j≠i, y_j=y_i} e^{−‖x_i−x_j‖²} / Σ_{j≠i} e^{−‖x_i−x_j‖²}.

    Samples without another sample of their class have no term; the mean runs over the others; with no
    such sample at all the loss is 0 (featspace's convention, see featspace.functional.metric).
    """
    n = x.shape[0]
    terms = []
    for i in range(n):
        numerator = 0.0
        denominator = 0.0
        has_positive = False
        for j in range(n):
            if j == i:
                continue
            similarity = torch.exp(-((x[i] - x[j]) ** 2).sum())
            denominator = denominator + similarity
            if int(y[j]) == int(y[i]):
                numerator = numerator + similarity
                has_positive = True
        if has_positive:
            terms.append(-torch.log(numerator / denominator))
    if not terms:
        return x.sum() * 0
    return sum(terms) / len(terms)


def literal_proto(x, y):
    """003 eq. 3, sample by sample, with the leave-one-out prototypes μ_{c,i} = mean_{j≠i, y_j=c} x_j.

    The sum over c runs over classes that have a sample other than i; samples alone in their class have
    no term, as in literal_nca.
    """
    n = x.shape[0]
    classes = sorted({int(c) for c in y})
    terms = []
    for i in range(n):
        distances = {}
        for c in classes:
            members = [j for j in range(n) if j != i and int(y[j]) == c]
            if not members:
                continue
            prototype = sum(x[j] for j in members) / len(members)
            distances[c] = ((x[i] - prototype) ** 2).sum()
        own = int(y[i])
        if own not in distances:
            continue
        denominator = sum(torch.exp(-dist) for dist in distances.values())
        terms.append(-torch.log(torch.exp(-distances[own]) / denominator))
    if not terms:
        return x.sum() * 0
    return sum(terms) / len(terms)


def _inputs(n=9, d=4, seed=0, scale=0.7):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()


LABELS = {
    "balanced": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2]),
    "singleton_class": torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3]),  # class 3 alone: no term for it
    "absent_class": torch.tensor([0, 0, 2, 2, 2, 0, 4, 4, 0]),  # classes 1 and 3 absent
    "one_class": torch.zeros(9, dtype=torch.long),
}


def _assert_loss_and_grad_match(fast, literal, x):
    x_fast = x.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out, ref = fast(x_fast), literal(x_ref)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    out.backward()
    ref.backward()
    torch.testing.assert_close(x_fast.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("labels", list(LABELS))
def test_nca_matches_eq4(labels):
    y = LABELS[labels]
    _assert_loss_and_grad_match(lambda x: nca_loss(x, y), lambda x: literal_nca(x, y), _inputs())


@pytest.mark.parametrize("labels", list(LABELS))
def test_proto_matches_eq3(labels):
    y = LABELS[labels]
    _assert_loss_and_grad_match(lambda x: proto_loss(x, y, 5), lambda x: literal_proto(x, y), _inputs())


@pytest.mark.parametrize("labels", list(LABELS))
def test_proto_without_num_classes_accepts_any_label_values(labels):
    y = LABELS[labels]
    x = _inputs(seed=2)
    torch.testing.assert_close(proto_loss(x, y * 7 + 100), proto_loss(x, y, 5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("labels", list(LABELS))
def test_proto_sync_free_path_over_all_classes_matches_eq3(labels):
    """The path taken on accelerators (prototypes for all C labels, absent ones masked); CPUs compact labels."""
    y = LABELS[labels]
    _assert_loss_and_grad_match(lambda x: _proto_loss_over_classes(x, y, 40), lambda x: literal_proto(x, y), _inputs())


@pytest.mark.parametrize("loss", [nca_loss, proto_loss], ids=["nca", "proto"])
@pytest.mark.parametrize("case", ["all_distinct", "batch_of_one"])
def test_no_valid_sample_gives_zero_with_gradient(loss, case):
    x = _inputs(n=4) if case == "all_distinct" else _inputs(n=1)
    y = torch.arange(x.shape[0])
    out = loss(x, y)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("loss", [nca_loss, proto_loss], ids=["nca", "proto"])
def test_zero_and_coincident_embeddings_give_finite_grads(loss):
    x = _inputs()
    x = torch.cat([torch.zeros(2, 4, dtype=x.dtype), x[:2], x[:2]]).detach().requires_grad_()
    y = torch.tensor([0, 0, 1, 2, 1, 2])
    out = loss(x, y)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("loss", [nca_loss, proto_loss], ids=["nca", "proto"])
def test_far_apart_embeddings_do_not_overflow(loss):
    x = (_inputs() * 1e3).detach().requires_grad_()
    out = loss(x, LABELS["balanced"])
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()


def test_separated_classes_give_near_zero_loss():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    x = centres[y] + 0.01 * torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert nca_loss(x, y) < 1e-20 and proto_loss(x, y) < 1e-20
    # all coincident: each sample has 1 positive among 3 equally close others
    assert math.isclose(nca_loss(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1])).item(), math.log(3), rel_tol=1e-6)


def test_squared_distances_match_cdist():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(5, 3, generator=g, dtype=torch.float64)
    b = torch.randn(7, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(squared_distances(a, b), torch.cdist(a, b) ** 2)
    assert (squared_distances(a, a).diagonal() >= 0).all()


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="shape"):
        nca_loss(torch.randn(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        proto_loss(torch.randn(3), torch.zeros(3, dtype=torch.long))


def test_nca_rows_whose_positives_lie_beyond_the_exponent_range():
    """The one-pass form exponentiates positives against their own maximum: a row whose positives are ~200
    farther than its nearest negative (e^-200 underflows float32, so a softmax-then-sum form gets 0 and must drop
    the row) keeps its term, equal in float32 to the float64 literal eq. 4; the terms below the exponent floor
    that the float32 pass leaves out are beyond float32 resolution."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    x[4:] = x[:4] + 0.1 * torch.randn(4, 3, generator=g, dtype=torch.float64)  # each sample next to a negative
    x[0] += torch.tensor([15.0, 0.0, 0.0], dtype=torch.float64)  # and far from its positive
    y = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5])
    reference = literal_nca(x.clone().requires_grad_(), y)
    assert reference.item() > 150 / 2  # the rows of samples 0 and 1 (of 2 valid) cost ~200 each
    xf = x.float().requires_grad_()
    out = nca_loss(xf, y)
    torch.testing.assert_close(out.double(), reference.detach(), rtol=1e-6, atol=0)
    xr = x.clone().requires_grad_()
    literal_nca(xr, y).backward()
    out.backward()
    torch.testing.assert_close(xf.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)
