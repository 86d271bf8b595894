"""Complement projections against literal float64 transcriptions of 003 eq. (7)-(8) and (9)-(11).

The literal forms work in the paper's layout: W ∈ R^{d×C} (= weight.T), column vectors x, an explicit
d×d projection matrix, torch.linalg.inv and a full SVD with zero-padded singular values.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from featspace.functional import (
    classifier_projection,
    classifier_subspace_basis,
    complement_projection,
    discriminant_ratio,
    discriminant_scores,
    spectral_complement_projection,
    subspace,
)


def literal_direct(x, weight, eps):
    """003 eq. 8 as printed: (I − W (WᵀW + εI)⁻¹ Wᵀ) x, with W = weightᵀ (d×C) and an explicit d×d matrix."""
    W = weight.T
    d, C = W.shape
    projection = torch.eye(d, dtype=x.dtype) - W @ torch.linalg.inv(W.T @ W + eps * torch.eye(C, dtype=x.dtype)) @ W.T
    return torch.stack([projection @ x[i] for i in range(x.shape[0])])


def literal_spectral(x, weight, p):
    """003 eq. 9-11: W = W̃ diag(λ) Vᵀ by a full SVD (W̃ d×d), λ padded with zeros to length d,
    λ̃ = λ / max λ, projection W̃ diag(1 − λ̃^p) W̃ᵀ. The binary p = 0 weights pick λ_j = 0 (0⁰ taken as 0)."""
    W = weight.T
    d = W.shape[0]
    basis, singular_values, _ = torch.linalg.svd(W, full_matrices=True)
    padded = torch.cat([singular_values, singular_values.new_zeros(d - singular_values.shape[0])])
    normalised = padded / padded.max()
    weights = []
    for j in range(d):
        power = normalised[j] ** p if padded[j] > 0 else torch.zeros((), dtype=x.dtype)
        weights.append(1 - power)
    projection = basis @ torch.diag(torch.stack(weights)) @ basis.T
    return torch.stack([projection @ x[i] for i in range(x.shape[0])])


def _data(n, d, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    weight = torch.randn(c, d, generator=g, dtype=torch.float64) / d**0.5
    return x, weight


def _compare_with_grads(fast, literal, x, weight, rtol=1e-10, atol=1e-12):
    xf, wf = x.clone().requires_grad_(), weight.clone().requires_grad_()
    xr, wr = x.clone().requires_grad_(), weight.clone().requires_grad_()
    out, ref = fast(xf, wf), literal(xr, wr)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    upstream = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(9))
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(xf.grad, xr.grad, rtol=rtol, atol=atol)
    torch.testing.assert_close(wf.grad, wr.grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("eps", [1e-3, 0.5])
@pytest.mark.parametrize("shape", [(7, 6, 3), (5, 4, 4), (5, 3, 6)], ids=["d>C", "d=C", "d<C"])
def test_direct_matches_eq8_with_explicit_inverse(shape, eps):
    x, weight = _data(*shape)
    # for d <= C, WᵀW + εI has condition number ~ σ_max²/ε: rounding is amplified by up to ~1e3
    _compare_with_grads(lambda a, w: complement_projection(a, w, eps), lambda a, w: literal_direct(a, w, eps), x, weight,
                        rtol=1e-8, atol=1e-9)


def test_classifier_projection_is_the_rest():
    x, weight = _data(7, 6, 3)
    torch.testing.assert_close(classifier_projection(x, weight) + complement_projection(x, weight), x)


def test_direct_projection_is_orthogonal_to_classifier_rows_up_to_eps():
    """weight · P⊥x = ε (G + εI)⁻¹ weight x exactly, hence O(ε) for a well-conditioned classifier."""
    x, weight = _data(20, 16, 5, seed=1)
    gram = weight @ weight.T
    for eps in (1e-3, 1e-6):
        residual = complement_projection(x, weight, eps) @ weight.T  # rows: W · P⊥x_i
        expected = eps * torch.linalg.solve(gram + eps * torch.eye(5, dtype=x.dtype), weight @ x.T).T
        torch.testing.assert_close(residual, expected)
        smallest = torch.linalg.eigvalsh(gram)[0]
        bound = eps / (smallest + eps) * (x @ weight.T).norm(dim=1)
        assert (residual.norm(dim=1) <= bound * (1 + 1e-9)).all()
    assert complement_projection(x, weight, 1e-9).matmul(weight.T).abs().max() < 1e-7


def test_direct_with_dependent_rows_stays_finite():
    x, weight = _data(5, 6, 3)
    weight = torch.cat([weight[:2], weight[:1]])  # two classes share a weight vector: WᵀW singular
    x.requires_grad_()
    out = complement_projection(x, weight)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(7, 6, 3), (5, 4, 4), (6, 3, 5)], ids=["d>C", "d=C", "d<C"])
def test_spectral_matches_eq9_11_with_full_svd(shape, p):
    x, weight = _data(*shape, seed=2)
    torch.testing.assert_close(spectral_complement_projection(x, weight, p), literal_spectral(x, weight, p))


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_spectral_gradients_match_full_svd_without_padding(p):
    """d < C: the full SVD of W (d×C) has no padded directions, so autograd through the literal form is exact."""
    x, weight = _data(6, 3, 5, seed=3)
    _compare_with_grads(lambda a, w: spectral_complement_projection(a, w, p), lambda a, w: literal_spectral(a, w, p),
                        x, weight, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_spectral_gradients_match_full_svd_with_padding(p):
    """d > C: autograd through a full SVD ignores the arbitrary padded basis vectors, so the reference writes
    eq. 11 as I − W̃ diag(λ̃^p) W̃ᵀ (W̃W̃ᵀ = I), where the padded vectors carry weight 0."""

    def reference(a, w):
        basis, s, _ = torch.linalg.svd(w.T, full_matrices=True)
        power = (s / s.max()) ** p
        kept = basis[:, : s.shape[0]]
        projection = torch.eye(w.shape[1], dtype=a.dtype) - kept @ torch.diag(power) @ kept.T
        return torch.stack([projection @ a[i] for i in range(a.shape[0])])

    x, weight = _data(7, 6, 3, seed=4)
    torch.testing.assert_close(reference(x, weight), literal_spectral(x, weight, p))
    _compare_with_grads(lambda a, w: spectral_complement_projection(a, w, p), reference, x, weight, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(5, 6, 3), (5, 3, 5)], ids=["d>C", "d<C"])
def test_spectral_gradcheck(shape, p):
    x, weight = _data(*shape, seed=5)
    assert gradcheck(lambda a, w: spectral_complement_projection(a, w, p),
                     (x.requires_grad_(), weight.requires_grad_()))


def test_spectral_gradient_is_finite_at_repeated_singular_values():
    """Rows of equal norm and orthogonal (a collapsed classifier): torch.linalg.svd's backward gives NaN,
    the spectral function itself is smooth there and the custom backward agrees with finite differences."""
    weight = torch.zeros(3, 6, dtype=torch.float64)
    weight[0, 0], weight[1, 1], weight[2, 2] = 2.0, 1.0, 1.0  # s = (2, 1, 1)
    x, _ = _data(5, 6, 3, seed=6)
    assert gradcheck(lambda a, w: spectral_complement_projection(a, w, 0.3),
                     (x.requires_grad_(), weight.requires_grad_()))
    _, s, vh = torch.linalg.svd(weight, full_matrices=False)
    naive = x - ((x @ vh.T) * (s / s.max()) ** 0.3) @ vh
    assert not torch.isfinite(torch.autograd.grad(naive.pow(2).sum(), weight)[0]).all()


def test_spectral_p0_equals_direct_as_eps_vanishes():
    x, weight = _data(7, 6, 3, seed=7)
    exact = spectral_complement_projection(x, weight, 0.0)
    for eps in (1e-4, 1e-6, 1e-8):
        gap = (complement_projection(x, weight, eps) - exact).abs().max()
        assert gap < 100 * eps
    torch.testing.assert_close(exact @ weight.T, torch.zeros(7, 3, dtype=x.dtype), atol=1e-12, rtol=0)
    # same gradients in the limit
    xd, wd = x.clone().requires_grad_(), weight.clone().requires_grad_()
    xs, ws = x.clone().requires_grad_(), weight.clone().requires_grad_()
    complement_projection(xd, wd, 1e-10).pow(2).sum().backward()
    spectral_complement_projection(xs, ws, 0.0).pow(2).sum().backward()
    torch.testing.assert_close(xd.grad, xs.grad, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(wd.grad, ws.grad, rtol=1e-7, atol=1e-7)


def test_spectral_p1_keeps_weaker_directions_partly():
    x, weight = _data(7, 6, 3, seed=8)
    _, s, vh = torch.linalg.svd(weight, full_matrices=False)
    coords = spectral_complement_projection(x, weight, 1.0) @ vh.T
    torch.testing.assert_close(coords, (x @ vh.T) * (1 - s / s.max()))


def test_zero_weight_projects_to_identity_with_finite_grads():
    x, _ = _data(4, 5, 3)
    weight = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    x.requires_grad_()
    for p in (0.0, 0.3):
        out = spectral_complement_projection(x, weight, p)
        torch.testing.assert_close(out, x)
        out.sum().backward()
        assert torch.isfinite(weight.grad).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(complement_projection(x, weight), x)


def test_half_inputs_are_upcast():
    x, weight = _data(4, 6, 3)
    out = complement_projection(x.bfloat16(), weight.float())
    assert out.dtype == torch.float32
    assert spectral_complement_projection(x.half(), weight.half(), 0.3).dtype == torch.float32


def test_classifier_subspace_basis():
    x, weight = _data(6, 7, 4, seed=9)
    basis = classifier_subspace_basis(weight)
    assert basis.shape == (4, 7)
    torch.testing.assert_close(basis @ basis.T, torch.eye(4, dtype=basis.dtype))
    torch.testing.assert_close(x - (x @ basis.T) @ basis, spectral_complement_projection(x, weight, 0.0))
    dependent = torch.cat([weight[:2], weight[:1] + weight[1:2]])
    assert classifier_subspace_basis(dependent).shape == (2, 7)


def literal_discriminant_ratio(x, y):
    """trace(S_B) / trace(S_T) with explicit scatter matrices (Fukunaga)."""
    mean = x.mean(0)
    total = sum(torch.outer(x[i] - mean, x[i] - mean) for i in range(x.shape[0]))
    between = 0
    for c in sorted({int(v) for v in y}):
        members = x[y == c]
        mc = members.mean(0)
        between = between + members.shape[0] * torch.outer(mc - mean, mc - mean)
    return torch.trace(between) / torch.trace(total)


def test_discriminant_ratio_matches_scatter_matrices():
    x, weight = _data(12, 5, 3, seed=10)
    y = torch.tensor([0, 1, 2, 5, 0, 1, 2, 5, 0, 1, 2, 0])
    torch.testing.assert_close(discriminant_ratio(x, y), literal_discriminant_ratio(x, y))
    basis = classifier_subspace_basis(weight)
    # rotation invariance: coordinates in an orthonormal basis score as the projected vectors
    torch.testing.assert_close(discriminant_ratio(x @ basis.T, y), discriminant_ratio((x @ basis.T) @ basis, y))
    # no variance: 0/0 is undefined, NaN rather than a 0 that would read as "no separation"
    assert torch.isnan(discriminant_ratio(torch.zeros(4, 3), torch.tensor([0, 0, 1, 1])))


def literal_subspace_bases(weight, rtol):
    """003 Sec. 2.4 in the paper's layout: a full SVD of W = weightᵀ (d×C); the left singular vectors of the
    singular values above rtol·max are W (d×r), the others W_⊥ (d×(d−r))."""
    left, singular_values, _ = torch.linalg.svd(weight.T, full_matrices=True)
    rank = sum(1 for s in singular_values if s > rtol * singular_values.max())
    return left[:, :rank], left[:, rank:]


@pytest.mark.parametrize("shape", [(30, 7, 3), (30, 4, 6)])
def test_discriminant_scores_match_the_transcription_in_all_three_spaces(shape):
    n, d, c = shape
    x, weight = _data(n, d, c, seed=11)
    y = torch.arange(n) % 4
    x = x + 2.0 * torch.randn(4, d, generator=torch.Generator().manual_seed(3), dtype=x.dtype)[y]
    scores = discriminant_scores(x, y, weight)
    inside, outside = literal_subspace_bases(weight, 1e-3)
    torch.testing.assert_close(scores["total"], literal_discriminant_ratio(x, y))
    torch.testing.assert_close(scores["classifier"], literal_discriminant_ratio(x @ inside, y))
    if outside.shape[1]:
        torch.testing.assert_close(scores["complement"], literal_discriminant_ratio(x @ outside, y))
    else:  # C ≥ d: the classifier subspace is everything, no complement is left
        assert torch.isnan(scores["complement"])
    assert set(discriminant_scores(x, y)) == {"total"}


def test_discriminant_scores_rank_tolerance_and_no_variance():
    x, weight = _data(20, 6, 4, seed=12)
    y = torch.arange(20) % 3
    # weights that sum to zero (as PEDCC points do), stored in float32 and evaluated in float64: rank C − 1 = 3,
    # their fourth singular value (~1e-7) is rounding noise that a machine-epsilon tolerance would count
    centred = (weight - weight.mean(0)).float().double()
    assert classifier_subspace_basis(centred).shape == (3, 6)
    assert classifier_subspace_basis(torch.zeros(4, 6)).shape == (0, 6)
    inside = (x @ classifier_subspace_basis(weight).T) @ classifier_subspace_basis(weight)
    scores = discriminant_scores(inside, y, weight)
    assert torch.isnan(scores["complement"]) and torch.isfinite(scores["classifier"])
    assert torch.isnan(discriminant_scores(x, y, torch.zeros(4, 6))["classifier"])
    with pytest.raises(ValueError, match="NaN"):
        classifier_subspace_basis(torch.full((2, 6), float("nan")))
    with pytest.raises(ValueError, match="weight must have shape"):
        discriminant_scores(x, y, weight[:, :3])


def test_bad_arguments_raise_value_error():
    x, weight = _data(4, 6, 3)
    with pytest.raises(ValueError, match="weight must have shape"):
        complement_projection(x, weight.T)
    with pytest.raises(ValueError, match="eps"):
        complement_projection(x, weight, -1.0)
    with pytest.raises(ValueError, match="p must be"):
        spectral_complement_projection(x, weight, -0.5)
    with pytest.raises(ValueError, match="x must have shape"):
        spectral_complement_projection(x[0], weight, 0.5)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(7, 5, 9), (7, 6, 3)], ids=["C>=d", "C<d"])
def test_spectral_gram_eigh_route_equals_the_svd_route(shape, p, monkeypatch):
    """The basis from eigh of the smaller Gram matrix (weightᵀweight [d, d] for C ≥ d, without U; weight·weightᵀ
    [C, C] for C < d) gives eq. 9-11 and its gradients as the SVD of weight does, to float64 round-off."""
    x, weight = _data(*shape, seed=11)
    u, s, vh = subspace.spectral_basis(weight)
    assert (u is None) == (shape[2] >= shape[1])  # the Gram route was taken
    _, s_svd, _ = torch.linalg.svd(weight, full_matrices=False)
    torch.testing.assert_close(s, s_svd, rtol=1e-13, atol=0)
    fast = {}
    for route, tolerance in (("eigh", subspace.GRAM_EIGH_TOLERANCE), ("svd", 0.0)):
        monkeypatch.setattr(subspace, "GRAM_EIGH_TOLERANCE", tolerance)
        xf, wf = x.clone().requires_grad_(), weight.clone().requires_grad_()
        out = spectral_complement_projection(xf, wf, p)
        upstream = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(12))
        (out * upstream).sum().backward()
        fast[route] = (out, xf.grad, wf.grad)
    assert subspace.spectral_basis(weight)[0] is not None  # tolerance 0: the SVD route
    for a, b in zip(fast["eigh"], fast["svd"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast["eigh"][0], literal_spectral(x, weight, p))


def test_spectral_basis_takes_the_svd_for_ill_conditioned_weights():
    """Squaring κ in the Gram matrix costs eps·κ² of accuracy: past GRAM_EIGH_TOLERANCE the SVD is used."""
    _, weight = _data(1, 4, 8, seed=13)
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    for smallest, svd_route in ((1e-2, False), (1e-6, True)):
        scaled = (u * torch.tensor([1.0, 0.5, 0.1, smallest], dtype=weight.dtype)) @ vh
        assert (subspace.spectral_basis(scaled)[0] is not None) == svd_route
        assert (subspace.spectral_basis(scaled.float())[0] is not None)  # float32: κ = 100 > 29 already
    assert subspace.spectral_basis(torch.zeros(8, 4, dtype=weight.dtype))[0] is not None


def test_spectral_float32_gram_route_is_accurate():
    """At the benchmark's shape class (C ≥ d, a random weight, κ ≈ 6 here) the float32 Gram route stays within
    float32 round-off of the float64 literal eq. 11."""
    g = torch.Generator().manual_seed(14)
    x, weight = torch.randn(16, 32, generator=g, dtype=torch.float64), torch.randn(64, 32, generator=g, dtype=torch.float64)
    out = spectral_complement_projection(x.float(), weight.float(), 0.3)
    assert subspace.spectral_basis(weight.float())[0] is None
    torch.testing.assert_close(out.double(), literal_spectral(x, weight, 0.3), rtol=0, atol=2e-5)
