"""directsum, nca and proto heads against literal float64 transcriptions of 003 eq. (1)-(4), (6)-(11), Table 3.

The literal losses work in the paper's layout (W ∈ R^{d×C} = weight.T, column vectors), with explicit
d×d projection matrices, sample-by-sample loops, and the literal metric losses of
tests/test_functional_metric.py.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.autograd import gradcheck

from featspace import heads
from tests.test_functional_metric import literal_nca, literal_proto

MODES = ["direct", "spectral", "sum", "classifier", "random_fixed", "identity_fixed"]


# ------------------------------------------------------------------------------------ literal forms
def literal_classification(x, y, cls, W, b):
    """003 eq. 1 (SCE) or eq. 2 (BCE) per sample with z_c = w_cᵀ x + b_c, averaged over the batch."""
    total = 0.0
    for i in range(x.shape[0]):
        z = [W[:, c] @ x[i] + b[c] for c in range(W.shape[1])]
        yi = int(y[i])
        if cls == "sce":
            total = total - torch.log(torch.exp(z[yi]) / sum(torch.exp(zc) for zc in z))
        else:
            term = -torch.log(torch.exp(z[yi]) / (1 + torch.exp(z[yi])))
            for c in range(len(z)):
                if c != yi:
                    term = term - torch.log(1 / (1 + torch.exp(z[c])))
            total = total + term
    return total / x.shape[0]


def literal_projection_matrix(mode, W, eps=1e-3, p=0.3, R=None):
    """The d×d matrix applied to x before ℓ_metric, for each row of the mode table (003 eq. 6-11, Table 3)."""
    d, C = W.shape
    eye_d = torch.eye(d, dtype=W.dtype)
    if mode == "sum":  # eq. 6 / Table 3 i-1: I
        return eye_d
    if mode in ("direct", "classifier"):  # eq. 8: W W^T x ≈ W (WᵀW + εI)⁻¹ Wᵀ x
        classifier_part = W @ torch.linalg.inv(W.T @ W + eps * torch.eye(C, dtype=W.dtype)) @ W.T
        return eye_d - classifier_part if mode == "direct" else classifier_part
    if mode == "spectral":  # eq. 9-11 with a full SVD, zero-padded λ
        basis, singular_values, _ = torch.linalg.svd(W, full_matrices=True)
        padded = torch.cat([singular_values, singular_values.new_zeros(d - singular_values.shape[0])])
        normalised = padded / padded.max()
        weights = torch.stack([1 - normalised[j] ** p if padded[j] > 0 else torch.ones((), dtype=W.dtype)
                               for j in range(d)])
        return basis @ torch.diag(weights) @ basis.T
    # Table 3 ii: R_C⊥ R_C⊥ᵀ = I − R_C R_Cᵀ
    return eye_d - R @ R.T


def literal_directsum(x, y, cls, metric, mode, lam, W, b, eps=1e-3, p=0.3, R=None, omega=None):
    """ℓ = E_i ℓ_cls + lam · ℓ_metric({P x_i, y_i}) (003 eq. 7; eq. 6, 11 and Table 3 by mode).

    Fixed modes: W = R ω (paper's layout; ω = omegaᵀ for the nn.Linear-shaped omega)."""
    if mode in ("random_fixed", "identity_fixed"):
        W = R @ omega.T
    projection = literal_projection_matrix(mode, W, eps, p, R)
    features = torch.stack([projection @ x[i] for i in range(x.shape[0])])
    metric_loss = literal_nca(features, y) if metric == "nca" else literal_proto(features, y)
    return literal_classification(x, y, cls, W, b) + lam * metric_loss


# ------------------------------------------------------------------------------------------ helpers
def _batch(n, d, labels, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64), torch.tensor(labels)


LABELS_C3 = [0, 0, 1, 1, 1, 2, 2, 0, 1, 2]
LABELS_C6 = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 0]  # class 5 has a single sample


def _build(d, c, seed=0, **hparams):
    torch.manual_seed(seed)
    return heads.build("directsum", d, c, **hparams).double()


def _params(head):
    return {name: p for name, p in head.named_parameters()}


def _check_against_literal(head, x, y, lam=1.0, rtol_grad=1e-8):
    xf = x.clone().requires_grad_()
    out = head(xf, y)
    out.loss.backward()
    xr = x.clone().requires_grad_()
    params = {name: p.detach().clone().requires_grad_() for name, p in head.named_parameters()}
    fixed = head.mode in ("random_fixed", "identity_fixed")
    R = head.basis.T if fixed else None
    W = None if fixed else params["weight"].T
    ref = literal_directsum(xr, y, head.cls, head.metric, head.mode, lam, W, params["bias"], head.eps, head.p,
                            R, params.get("omega"))
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(xf.grad, xr.grad, rtol=rtol_grad, atol=1e-10)
    for name, p in head.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, rtol=rtol_grad, atol=1e-10, msg=name)


# ------------------------------------------------------------------------------ directsum vs paper
@pytest.mark.parametrize("mode", [m for m in MODES if m != "spectral"])
@pytest.mark.parametrize("cls, metric", list(itertools.product(["sce", "bce"], ["nca", "proto"])))
def test_directsum_matches_literal(mode, cls, metric):
    head = _build(6, 3, cls=cls, metric=metric, mode=mode, lam=0.7)
    x, y = _batch(10, 6, LABELS_C3)
    _check_against_literal(head, x, y, lam=0.7)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("cls, metric", list(itertools.product(["sce", "bce"], ["nca", "proto"])))
def test_spectral_matches_literal_when_d_below_c(cls, metric, p):
    """Sec. 3.4's case d ≤ C: the full SVD of W (d×C) has no padding, so autograd through it is exact."""
    head = _build(4, 6, cls=cls, metric=metric, mode="spectral", p=p)
    x, y = _batch(12, 4, LABELS_C6)
    _check_against_literal(head, x, y, rtol_grad=1e-7)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_spectral_loss_matches_literal_when_d_above_c(p):
    head = _build(6, 3, mode="spectral", p=p)
    x, y = _batch(10, 6, LABELS_C3)
    W, b = head.weight.detach().T, head.bias.detach()
    torch.testing.assert_close(head(x, y).loss, literal_directsum(x, y, "sce", "nca", "spectral", 1.0, W, b, p=p))


@pytest.mark.parametrize("mode", ["spectral", "classifier", "random_fixed", "identity_fixed"])
def test_gradcheck_non_default_modes(mode):
    head = _build(5, 3, mode=mode, metric="proto").eval()
    x, y = _batch(6, 5, [0, 1, 2, 0, 1, 2], seed=3)
    names = [n for n, _ in head.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in head.named_parameters())
    buffers = dict(head.named_buffers())

    def loss_fn(xx, *ps):
        return torch.func.functional_call(head, ({**dict(zip(names, ps)), **buffers},), (xx, y)).loss

    assert gradcheck(loss_fn, (x.requires_grad_(), *params), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_spectral_p0_equals_direct_as_eps_vanishes():
    direct, spectral = _build(6, 3, mode="direct", eps=1e-10), _build(6, 3, mode="spectral", p=0.0)
    x, y = _batch(10, 6, LABELS_C3)
    xd, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss_d, loss_s = direct(xd, y).loss, spectral(xs, y).loss
    torch.testing.assert_close(loss_d, loss_s, rtol=1e-8, atol=1e-8)
    loss_d.backward()
    loss_s.backward()
    torch.testing.assert_close(xd.grad, xs.grad, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(direct.weight.grad, spectral.weight.grad, rtol=1e-7, atol=1e-7)


def test_direct_metric_gradient_is_orthogonal_to_the_classifier():
    """The point of eq. 7 (Sec. 2.3-2.4): ∂ℓ_metric/∂x lies in the complement of span(W), up to O(ε)."""
    head = _build(8, 3, mode="direct", eps=1e-6)
    x, y = _batch(10, 8, LABELS_C3)
    x.requires_grad_()
    metric_loss = head(x, y).parts["nca"]
    (grad,) = torch.autograd.grad(metric_loss, x)
    assert grad.abs().max() > 1e-3
    assert (grad @ head.weight.detach().T).abs().max() < 1e-4 * grad.abs().max()


@pytest.mark.parametrize("mode", ["random_fixed", "identity_fixed"])
def test_fixed_modes_split_the_gradients_exactly(mode):
    """Table 3 ii: ∂ℓ_cls/∂x ∈ span(R), ∂ℓ_metric/∂x ⟂ span(R); with I_C they touch disjoint coordinates."""
    head = _build(7, 3, mode=mode)
    x, y = _batch(10, 7, LABELS_C3)
    x.requires_grad_()
    parts = head(x, y).parts
    (grad_cls,) = torch.autograd.grad(parts["sce"], x, retain_graph=True)
    (grad_metric,) = torch.autograd.grad(parts["nca"], x)
    basis = head.basis
    # the random basis was drawn in float32 (the default dtype) before .double(): orthonormal to ~1e-7
    tolerance = 1e-14 if mode == "identity_fixed" else 1e-6
    scale = grad_metric.abs().max()
    torch.testing.assert_close(grad_cls - (grad_cls @ basis.T) @ basis, torch.zeros_like(grad_cls),
                               atol=tolerance * grad_cls.abs().max(), rtol=0)
    torch.testing.assert_close(grad_metric @ basis.T, torch.zeros(10, 3, dtype=x.dtype), atol=tolerance * scale, rtol=0)
    if mode == "identity_fixed":
        assert torch.equal(grad_cls[:, 3:], torch.zeros(10, 4, dtype=x.dtype))
        assert torch.equal(grad_metric[:, :3], torch.zeros(10, 3, dtype=x.dtype))


def test_fixed_mode_parameters_and_basis():
    head = _build(7, 3, mode="random_fixed", basis_seed=5)
    assert set(_params(head)) == {"omega", "bias"} and "weight" not in head.state_dict()
    assert head.omega.shape == (3, 3) and head.basis.shape == (3, 7)
    torch.testing.assert_close(head.basis @ head.basis.T, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(head.weight, head.omega @ head.basis)
    x, _ = _batch(4, 7, [0, 1, 2, 0])
    torch.testing.assert_close(head.predict(x), x @ head.weight.T + head.bias)
    same, other = _build(7, 3, mode="random_fixed", basis_seed=5), _build(7, 3, mode="random_fixed", basis_seed=6)
    assert torch.equal(same.basis, head.basis) and not torch.allclose(other.basis, head.basis)
    identity = _build(7, 3, mode="identity_fixed")
    assert torch.equal(identity.basis, torch.eye(7, dtype=torch.float64)[:3])


@pytest.mark.parametrize("mode", MODES)
def test_logits_are_the_classifier_scores(mode):
    head = _build(6, 3, mode=mode)
    x, y = _batch(10, 6, LABELS_C3)
    out = head(x, y)
    expected = x @ head.weight.T + head.bias
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(head.predict(x), expected)


@pytest.mark.parametrize("mode", ["direct", "spectral", "classifier"])
def test_detach_projection_changes_weight_grad_not_loss(mode):
    x, y = _batch(10, 6, LABELS_C3)
    grads = {}
    for detach in (False, True):
        head = _build(6, 3, mode=mode, detach_projection=detach)
        xx = x.clone().requires_grad_()
        out = head(xx, y)
        out.loss.backward()
        grads[detach] = (out.loss.detach(), xx.grad, head.weight.grad, head.bias.grad)
        if detach:  # the classifier is then trained by ℓ_cls alone
            cls_grad = torch.autograd.grad(head(x, y).parts["sce"], head.weight)[0]
            torch.testing.assert_close(head.weight.grad, cls_grad)
    torch.testing.assert_close(grads[False][0], grads[True][0], rtol=0, atol=0)
    torch.testing.assert_close(grads[False][1], grads[True][1], rtol=0, atol=0)
    torch.testing.assert_close(grads[False][3], grads[True][3], rtol=0, atol=0)
    assert (grads[False][2] - grads[True][2]).abs().max() > 1e-6


@pytest.mark.parametrize("mode", ["sum", "random_fixed"])
def test_detach_projection_is_a_no_op_without_a_learned_projection(mode):
    x, y = _batch(10, 6, LABELS_C3)
    grads = []
    for detach in (False, True):
        head = _build(6, 3, mode=mode, detach_projection=detach)
        head(x, y).loss.backward()
        grads.append([p.grad for p in head.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("cls, metric", list(itertools.product(["sce", "bce"], ["nca", "proto"])))
def test_parts_and_lam(cls, metric):
    x, y = _batch(10, 6, LABELS_C3)
    out = _build(6, 3, cls=cls, metric=metric, lam=2.5)(x, y)
    assert set(out.parts) == {cls, metric}
    torch.testing.assert_close(out.loss, out.parts[cls] + 2.5 * out.parts[metric])
    zero = _build(6, 3, cls=cls, metric=metric, lam=0.0)(x, y)
    torch.testing.assert_close(zero.loss, zero.parts[cls])


def test_defaults_are_the_papers():
    head = heads.build("directsum", 640, 64)
    assert heads.hparams_of(head) == {
        "cls": "sce", "metric": "nca", "mode": "direct", "lam": 1.0, "eps": 1e-3, "p": 0.3,
        "detach_projection": False, "basis_seed": 0,
    }


@pytest.mark.parametrize(
    "hparams, match",
    [
        ({"cls": "ce"}, "cls must be one of"),
        ({"metric": "triplet"}, "metric must be one of"),
        ({"mode": "orthogonal"}, "mode must be one of"),
        ({"lam": -1.0}, "lam must lie"),
        ({"lam": float("nan")}, "lam must be a finite"),
        ({"eps": 0.0}, "eps must lie"),
        ({"p": 1.5}, "p must lie"),
        ({"p": -0.1}, "p must lie"),
        ({"detach_projection": 1}, "detach_projection must be a bool"),
        ({"basis_seed": 1.5}, "basis_seed must be an int"),
    ],
)
def test_bad_hparams_raise(hparams, match):
    with pytest.raises(ValueError, match=match):
        heads.build("directsum", 6, 3, **hparams)


@pytest.mark.parametrize("mode", ["direct", "random_fixed", "identity_fixed"])
def test_modes_needing_a_complement_reject_d_not_above_c(mode):
    with pytest.raises(ValueError, match="spectral"):
        heads.build("directsum", 4, 4, mode=mode)
    heads.build("directsum", 4, 10, mode="spectral")(torch.randn(8, 4), torch.arange(8) % 10)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("metric", ["nca", "proto"])
def test_every_mode_is_safe_on_edge_cases_and_bf16(mode, metric):
    torch.manual_seed(0)
    head = heads.build("directsum", 6, 3, mode=mode, metric=metric)
    x = torch.randn(9, 6)
    x[0] = 0.0
    for xb, yb in [(x, torch.arange(9) % 3), (x[:1], torch.tensor([2])), (x[:3], torch.arange(3))]:
        xb = xb.clone().requires_grad_()
        out = head(xb, yb)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(xb.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    reference = head(x, torch.arange(9) % 3).loss.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = head(x, torch.arange(9) % 3).loss
    assert torch.isfinite(low) and math.isclose(low.item(), reference.item(), rel_tol=5e-2, abs_tol=5e-2)


# ------------------------------------------------------------------------------------ nca, proto
@pytest.mark.parametrize("name, literal", [("nca", literal_nca), ("proto", literal_proto)])
@pytest.mark.parametrize("labels", [LABELS_C3, [0, 1, 2, 0, 1, 2, 0, 0, 1, 1]])
def test_metric_heads_match_literal(name, literal, labels):
    head = heads.build(name, 6, 3).double()
    x, y = _batch(10, 6, labels, seed=4)
    xf, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = head(xf, y)
    ref = literal(xr, y)
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-10, atol=1e-12)
    assert set(out.parts) == {name}


@pytest.mark.parametrize("name", ["nca", "proto"])
def test_running_class_means(name):
    head = heads.build(name, 4, 5, momentum=0.25).double()
    x1, y1 = _batch(6, 4, [0, 0, 1, 1, 1, 3], seed=1)
    x2, y2 = _batch(6, 4, [0, 1, 2, 2, 4, 4], seed=2)
    head.train()
    out1 = head(x1, y1)
    mean = lambda x, y, c: x[y == c].mean(0)  # noqa: E731
    expected = torch.zeros(5, 4, dtype=torch.float64)
    for c in (0, 1, 3):
        expected[c] = mean(x1, y1, c)
    torch.testing.assert_close(head.class_means, expected)
    assert head.class_seen.tolist() == [True, True, False, True, False]
    torch.testing.assert_close(out1.logits, head.scores(x1))
    head(x2, y2)
    expected[0] = 0.75 * mean(x1, y1, 0) + 0.25 * mean(x2, y2, 0)
    expected[1] = 0.75 * mean(x1, y1, 1) + 0.25 * mean(x2, y2, 1)
    expected[2], expected[4] = mean(x2, y2, 2), mean(x2, y2, 4)
    torch.testing.assert_close(head.class_means, expected)
    head.eval()
    head(x1, y1)
    torch.testing.assert_close(head.class_means, expected)  # evaluation does not move the means
    scores = head.predict(x1)
    torch.testing.assert_close(scores, -torch.cdist(x1, expected) ** 2)
    assert torch.equal(head.learned_centroids(), head.class_means)  # a copy of the means (checked above)
    assert head.learned_centroids() is not head.class_means
    assert {"class_means", "class_seen"} <= set(head.state_dict())


@pytest.mark.parametrize("name", ["nca", "proto"])
def test_unseen_classes_are_never_predicted(name):
    head = heads.build(name, 4, 5).train()
    x, y = _batch(6, 4, [0, 0, 1, 1, 3, 3])
    head(x.float(), y)
    scores = head.predict(torch.randn(20, 4) * 10)
    assert set(scores.argmax(1).tolist()) <= {0, 1, 3}
    assert torch.isfinite(scores).all() and (scores[:, [2, 4]] == torch.finfo(torch.float32).min).all()


@pytest.mark.parametrize("name", ["nca", "proto"])
def test_metric_head_loss_does_not_depend_on_the_means(name):
    head = heads.build(name, 6, 3).double()
    x, y = _batch(10, 6, LABELS_C3)
    before = head.eval()(x, y).loss
    head.train()(x, y)
    head.train()(x + 1, y)
    torch.testing.assert_close(head.eval()(x, y).loss, before, rtol=0, atol=0)


@pytest.mark.parametrize("momentum", [0.0, -0.1, 1.5, "0.1"])
def test_bad_momentum_raises(momentum):
    with pytest.raises(ValueError, match="momentum"):
        heads.build("nca", 4, 3, momentum=momentum)
