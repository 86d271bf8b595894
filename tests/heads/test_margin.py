"""The cosine-margin heads against literal float64 transcriptions of their papers' formulas.

Each reference below is written per sample and per class with explicit loops, from the formula its
docstring states; the heads are vectorised. Loss and gradients (embeddings and every parameter) must
agree to float64 precision.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from featspace import heads

B, D, C = 16, 5, 4


# ------------------------------------------------------------------------------ literal transcriptions
def dot(a, b):
    return sum(a[k] * b[k] for k in range(a.shape[0]))


def length(a):
    return torch.sqrt(dot(a, a))


def cosine(a, b):
    return dot(a, b) / (length(a) * length(b))


def psi(theta, m):
    """ψ(θ) = (−1)^k cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m] (L-Softmax, SphereFace)."""
    k = 0
    while not (k * math.pi / m <= theta.item() <= (k + 1) * math.pi / m):
        k += 1
    return (-1) ** k * torch.cos(m * theta) - 2 * k


def softmax_loss_with_target(x, y, target_logit, other_logit):
    """mean_i −log( e^{f_i} / (e^{f_i} + Σ_{j≠y_i} e^{g_ij}) ) with f_i = target_logit(i), g_ij = other_logit(i, j)."""
    total = 0.0
    for i in range(x.shape[0]):
        yi = int(y[i])
        numerator = torch.exp(target_logit(i, yi))
        denominator = numerator
        for j in range(C):
            if j != yi:
                denominator = denominator + torch.exp(other_logit(i, j))
        total = total - torch.log(numerator / denominator)
    return total / x.shape[0]


def reference_normalized(x, y, W, s, phi):
    """Normalised-softmax family: f_i = s·φ(θ_{y_i}), g_ij = s·cos θ_ij, with θ from cos(x_i, w_j)."""
    return softmax_loss_with_target(
        x, y,
        target_logit=lambda i, yi: s * phi(torch.acos(cosine(x[i], W[yi]))),
        other_logit=lambda i, j: s * cosine(x[i], W[j]),
    )


def reference_arcface_phi(m):
    """cos(θ + m) for θ + m ≤ π, cos θ − m·sin m beyond (the ArcFace authors' threshold rule)."""
    return lambda theta: torch.cos(theta + m) if theta.item() + m <= math.pi else torch.cos(theta) - m * math.sin(m)


def reference_sphereface_feature_norm(x, y, W, m, lam):
    """A-Softmax with ‖x‖ kept: f_i = ‖x_i‖(λ cos θ_y + ψ(θ_y))/(1+λ), g_ij = ‖x_i‖ cos θ_ij, ‖w_j‖ = 1."""
    def target(i, yi):
        c = cosine(x[i], W[yi])
        return length(x[i]) * (lam * c + psi(torch.acos(c), m)) / (1 + lam)

    return softmax_loss_with_target(x, y, target, lambda i, j: length(x[i]) * cosine(x[i], W[j]))


def reference_lsoftmax(x, y, W, m, lam):
    """L-Softmax: f_i = (λ‖w_y‖‖x‖cos θ_y + ‖w_y‖‖x‖ψ(θ_y))/(1+λ), g_ij = ‖w_j‖‖x_i‖cos θ_ij."""
    def target(i, yi):
        c = cosine(x[i], W[yi])
        r = length(W[yi]) * length(x[i])
        return (lam * r * c + r * psi(torch.acos(c), m)) / (1 + lam)

    return softmax_loss_with_target(x, y, target, lambda i, j: length(W[j]) * length(x[i]) * cosine(x[i], W[j]))


# --------------------------------------------------------------------------------------------- helpers
def inputs(seed=0):
    """Embeddings whose target angles cover [0, π]: some near w_y, some near −w_y, the rest random."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(C, D, generator=g, dtype=torch.float64)
    y = torch.arange(B) % C
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    x[:4] = 2.0 * W[y[:4]] + 0.3 * x[:4]       # small θ_y
    x[4:8] = -1.5 * W[y[4:8]] + 0.3 * x[4:8]   # θ_y near π: the last pieces of ψ, ArcFace's threshold
    return x, y, W


def compare(name, reference, seed=0, **hparams):
    x, y, W = inputs(seed)
    head = heads.build(name, D, C, **hparams).double()
    with torch.no_grad():
        head.weight.copy_(W)
    xh = x.clone().requires_grad_()
    out = head(xh, y)
    xr, Wr = x.clone().requires_grad_(), W.clone().requires_grad_()
    ref = reference(xr, y, Wr)
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-12)
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(xh.grad, xr.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(head.weight.grad, Wr.grad, rtol=1e-8, atol=1e-10)
    assert [n for n, _ in head.named_parameters()] == ["weight"]
    return head, out


# ------------------------------------------------------------------------------- heads vs literal forms
@pytest.mark.parametrize("scale", [30.0, 2.5])
def test_normface_matches_literal(scale):
    compare("normface", lambda x, y, W: reference_normalized(x, y, W, scale, torch.cos), scale=scale)


@pytest.mark.parametrize("scale, margin", [(30.0, 0.4), (16.0, 0.1)])
def test_cosface_matches_literal(scale, margin):
    compare("cosface", lambda x, y, W: reference_normalized(x, y, W, scale, lambda t: torch.cos(t) - margin),
            scale=scale, margin=margin)


@pytest.mark.parametrize("scale, margin", [(30.0, 0.05), (8.0, 0.5), (4.0, 1.2)])
def test_arcface_matches_literal(scale, margin):
    """m = 1.2 with targets near θ = π exercises both sides of the threshold rule."""
    x, y, W = inputs()
    thetas = [math.acos(float(cosine(x[i], W[int(y[i])]))) for i in range(B)]
    if margin == 1.2:
        assert any(t + margin > math.pi for t in thetas) and any(t + margin <= math.pi for t in thetas)
    compare("arcface", lambda x, y, W: reference_normalized(x, y, W, scale, reference_arcface_phi(margin)),
            scale=scale, margin=margin)


@pytest.mark.parametrize("m1, m2, m3", [(1.0, 0.3, 0.2), (0.9, 0.4, 0.15), (1.35, 0.0, 0.0)])
def test_combined_margin_matches_literal(m1, m2, m3):
    compare("combined_margin",
            lambda x, y, W: reference_normalized(x, y, W, 10.0, lambda t: torch.cos(m1 * t + m2) - m3),
            scale=10.0, margin1=m1, margin2=m2, margin3=m3)


@pytest.mark.parametrize("margin", [1.35, 2.5, 4.0, 3])
def test_sphereface_matches_literal_including_non_integer_margin(margin):
    compare("sphereface", lambda x, y, W: reference_normalized(x, y, W, 6.0, lambda t: psi(t, margin)),
            scale=6.0, margin=margin)


def test_sphereface_default_is_lace_setting_s64_m135():
    compare("sphereface", lambda x, y, W: reference_normalized(x, y, W, 64.0, lambda t: psi(t, 1.35)))


@pytest.mark.parametrize("margin, lam", [(1.35, 0.0), (4, 0.0), (4, 5.0)])
def test_sphereface_feature_norm_and_softmax_weight_match_literal(margin, lam):
    """scale=None: SphereFace's own ‖x‖ radius; softmax_weight: its λ mix with cos θ_y."""
    compare("sphereface", lambda x, y, W: reference_sphereface_feature_norm(x, y, W, margin, lam),
            scale=None, margin=margin, softmax_weight=lam)


def test_sphereface_softmax_weight_with_scale_matches_literal():
    lam, s, m = 3.0, 5.0, 1.35
    compare("sphereface",
            lambda x, y, W: reference_normalized(x, y, W, s, lambda t: (lam * torch.cos(t) + psi(t, m)) / (1 + lam)),
            scale=s, margin=m, softmax_weight=lam)


@pytest.mark.parametrize("margin, lam", [(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0), (4, 3.0)])
def test_lsoftmax_matches_literal(margin, lam):
    compare("lsoftmax", lambda x, y, W: reference_lsoftmax(x, y, W, margin, lam), margin=margin, softmax_weight=lam)


def test_logits_are_plain_scaled_cosines_without_margin():
    x, y, W = inputs()
    for name in ("normface", "cosface", "arcface", "combined_margin", "sphereface"):
        head = heads.build(name, D, C).double()
        with torch.no_grad():
            head.weight.copy_(W)
        expected = torch.stack([torch.stack([head.scale * cosine(x[i], W[j]) for j in range(C)]) for i in range(B)])
        out = head(x, y)
        torch.testing.assert_close(out.logits, expected)
        torch.testing.assert_close(head.predict(x), expected)
    head = heads.build("lsoftmax", D, C).double()
    torch.testing.assert_close(head(x, y).logits, x @ head.weight.T)


# ------------------------------------------------------------------------------------ reductions
def _loss(name, x, y, W, **hparams):
    head = heads.build(name, D, C, **hparams).double()
    with torch.no_grad():
        head.weight.copy_(W)
    return head(x, y).loss


@pytest.mark.parametrize(
    "name, hparams",
    [
        ("cosface", {"margin": 0.0}),
        ("arcface", {"margin": 0.0}),
        ("combined_margin", {"margin1": 1.0, "margin2": 0.0, "margin3": 0.0}),
        ("sphereface", {"margin": 1.0}),
        ("sphereface", {"margin": 4, "softmax_weight": 1e12}),
    ],
)
def test_zero_margin_reduces_to_normface(name, hparams):
    x, y, W = inputs()
    torch.testing.assert_close(_loss(name, x, y, W, scale=12.0, **hparams), _loss("normface", x, y, W, scale=12.0))


def test_combined_margin_special_cases_are_arcface_and_cosface_where_defined():
    x, y, W = inputs()
    x = x[8:]  # random targets, none beyond ArcFace's threshold θ > π − m
    y = y[8:]
    arc = _loss("combined_margin", x, y, W, scale=20.0, margin1=1.0, margin2=0.3, margin3=0.0)
    torch.testing.assert_close(arc, _loss("arcface", x, y, W, scale=20.0, margin=0.3))
    cos = _loss("combined_margin", x, y, W, scale=20.0, margin1=1.0, margin2=0.0, margin3=0.35)
    torch.testing.assert_close(cos, _loss("cosface", x, y, W, scale=20.0, margin=0.35))


def test_lsoftmax_margin_one_is_softmax_without_bias():
    x, y, W = inputs()
    torch.testing.assert_close(_loss("lsoftmax", x, y, W, margin=1), F.cross_entropy(x @ W.T, y))


def test_margins_raise_the_loss():
    x, y, W = inputs()
    base = _loss("normface", x, y, W)
    assert _loss("cosface", x, y, W) > base
    assert _loss("arcface", x, y, W) > base
    assert _loss("sphereface", x, y, W, scale=30.0) > base
    assert _loss("combined_margin", x, y, W, scale=30.0) > base


# ------------------------------------------------------------------------------------ edge cases
@pytest.mark.parametrize(
    "name, hparams",
    [
        ("arcface", {"margin": 0.5}),
        ("combined_margin", {}),
        ("sphereface", {}),
        ("sphereface", {"scale": None, "margin": 4}),
        ("lsoftmax", {}),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_embedding_on_its_class_weight_or_zero_gives_finite_grads(name, hparams, dtype):
    """cos θ = ±1 exactly (where acos and √(1 − cos²) have infinite slope) and x = 0."""
    head = heads.build(name, D, C, **hparams).to(dtype)
    x = torch.randn(4, D, dtype=dtype)
    with torch.no_grad():
        x[0] = head.weight[0] * 3.0
        x[1] = -head.weight[1]
        x[2] = 0.0
    x.requires_grad_()
    out = head(x, torch.tensor([0, 1, 2, 3]))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


# ------------------------------------------------------------------------------ hyperparameters
@pytest.mark.parametrize(
    "name, hparams, match",
    [
        ("normface", {"scale": 0.0}, "scale"),
        ("normface", {"scale": -1.0}, "scale"),
        ("normface", {"scale": float("nan")}, "scale"),
        ("normface", {"scale": "30"}, "scale"),
        ("normface", {"scale": True}, "scale"),
        ("normface", {"scale": None}, "scale"),
        ("cosface", {"margin": -0.1}, "margin"),
        ("cosface", {"margin": float("inf")}, "margin"),
        ("arcface", {"margin": math.pi}, "margin"),
        ("arcface", {"margin": 2.0}, "margin"),
        ("arcface", {"margin": -0.05}, "margin"),
        ("combined_margin", {"margin1": 0.0}, "margin1"),
        ("combined_margin", {"margin2": 3.5}, "margin2"),
        ("combined_margin", {"margin3": -0.2}, "margin3"),
        ("sphereface", {"margin": 0.5}, "margin"),
        ("sphereface", {"softmax_weight": -1.0}, "softmax_weight"),
        ("sphereface", {"scale": 0.0}, "scale"),
        ("lsoftmax", {"margin": 2.5}, "margin"),
        ("lsoftmax", {"margin": 0}, "margin"),
        ("lsoftmax", {"margin": True}, "margin"),
        ("lsoftmax", {"softmax_weight": float("nan")}, "softmax_weight"),
    ],
)
def test_bad_hparams_raise_value_error(name, hparams, match):
    with pytest.raises(ValueError, match=match):
        heads.build(name, D, C, **hparams)


def test_defaults_follow_the_documented_policy():
    assert heads.default_hparams("arcface") == {"scale": 30.0, "margin": 0.05}
    assert heads.default_hparams("cosface") == {"scale": 30.0, "margin": 0.4}
    assert heads.default_hparams("sphereface") == {"scale": 64.0, "margin": 1.35, "softmax_weight": 0.0}
    assert heads.default_hparams("normface") == {"scale": 30.0}
    assert heads.default_hparams("combined_margin") == {"scale": 64.0, "margin1": 1.0, "margin2": 0.3,
                                                        "margin3": 0.2}
    assert heads.default_hparams("lsoftmax") == {"margin": 4, "softmax_weight": 0.0}
    head = heads.build("sphereface", D, C, scale=None)
    assert heads.hparams_of(head)["scale"] is None


@pytest.mark.parametrize("name, margin", [("sphereface", 1e308), ("sphereface", 65.0), ("lsoftmax", 10**9)])
def test_multiplicative_margins_are_bounded_instead_of_hanging(name, margin):
    """Issue 17, item 6: m = 1e308 looped over int(m) forever; the margin is bounded at construction."""
    with pytest.raises(ValueError, match="margin must"):
        heads.build(name, 8, 3, margin=margin)
    from featspace.functional import multiplicative_angular_margin

    with pytest.raises(ValueError, match=r"must lie in \[1, 64\]"):
        multiplicative_angular_margin(torch.zeros(2), 1e308)
