"""featspace.functional's angular math: margin functions, cosines and HASeparator's projections."""

from __future__ import annotations

import math

import pytest
import torch

from featspace import functional
from featspace.functional import (
    additive_angular_margin,
    angles,
    combined_margin,
    cosine_logits,
    cosines_and_target_weight_cosines,
    hyperplane_hinge_sums,
    hyperplane_projections,
    hyperplane_projections_from_cosines,
    multiplicative_angular_margin,
    normalize_rows,
    target_weight_cosines,
)

MARGINS = [1.0, 1.35, 2.0, 2.5, 3.0, 4.0, 5.0]


def test_public_names_are_exported():
    for name in ("cosine_logits", "hyperplane_projections", "multiplicative_angular_margin",
                 "additive_angular_margin", "combined_margin", "angles", "hyperplane_projections_from_cosines", "normalize_rows",
                 "target_weight_cosines", "hyperplane_hinge_sums", "cosines_and_target_weight_cosines"):
        assert hasattr(functional, name), name


# -------------------------------------------------------------------------------------------- ψ
def psi_of_theta(theta: torch.Tensor, m: float) -> torch.Tensor:
    return multiplicative_angular_margin(torch.cos(theta), m)


@pytest.mark.parametrize("m", MARGINS)
def test_psi_is_strictly_decreasing_on_0_pi(m):
    theta = torch.linspace(1e-4, math.pi - 1e-4, 20001, dtype=torch.float64)
    values = psi_of_theta(theta, m)
    assert (values[1:] < values[:-1]).all()
    assert values[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("m", MARGINS)
def test_psi_is_continuous_at_every_piece_boundary(m):
    """Both sides of θ = kπ/m equal 1 − 2k: the pieces join without a jump."""
    delta = 1e-7
    for k in range(1, math.ceil(m)):
        boundary = k * math.pi / m
        if boundary >= math.pi:
            break
        sides = psi_of_theta(torch.tensor([boundary - delta, boundary + delta], dtype=torch.float64), m)
        torch.testing.assert_close(sides, torch.full((2,), 1.0 - 2 * k, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize("m", MARGINS)
def test_psi_matches_its_piecewise_definition(m):
    theta = torch.linspace(0.01, math.pi - 0.01, 97, dtype=torch.float64)
    expected = []
    for t in theta.tolist():
        k = math.floor(m * t / math.pi)
        expected.append((-1) ** k * math.cos(m * t) - 2 * k)
    torch.testing.assert_close(psi_of_theta(theta, m), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("m", [2, 3, 4, 6])
def test_integer_psi_chebyshev_form_equals_acos_form(m):
    """Integer m uses T_m(cos θ); nudging m off the integer takes the acos path: same values and slopes."""
    cos = torch.linspace(-0.999, 0.999, 401, dtype=torch.float64, requires_grad=True)
    fast = multiplicative_angular_margin(cos, m)
    (fast_grad,) = torch.autograd.grad(fast.sum(), cos)
    via_angle = multiplicative_angular_margin(cos, m + 1e-12)
    (angle_grad,) = torch.autograd.grad(via_angle.sum(), cos)
    torch.testing.assert_close(fast, via_angle, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast_grad, angle_grad, atol=1e-6, rtol=1e-6)


def test_psi_gradient_is_finite_at_cos_plus_minus_one():
    for m in (1.35, 4):
        cos = torch.tensor([-1.0, 1.0], requires_grad=True)
        (grad,) = torch.autograd.grad(multiplicative_angular_margin(cos, m).sum(), cos)
        assert torch.isfinite(grad).all()


def test_psi_rejects_margin_below_one():
    with pytest.raises(ValueError, match="margin"):
        multiplicative_angular_margin(torch.zeros(3), 0.5)


# --------------------------------------------------------------------------- additive margins
@pytest.mark.parametrize("m", [0.05, 0.5, 1.2, math.pi / 2])
def test_arcface_margin_is_cos_theta_plus_m_then_threshold(m):
    theta = torch.linspace(0.0, math.pi, 1001, dtype=torch.float64)
    phi = additive_angular_margin(torch.cos(theta), m)
    inside, beyond = theta < math.pi - m - 1e-9, theta > math.pi - m + 1e-9  # off the boundary itself
    torch.testing.assert_close(phi[inside], torch.cos(theta[inside] + m))
    torch.testing.assert_close(phi[beyond], torch.cos(theta[beyond]) - m * math.sin(m))
    assert (phi[1:] <= phi[:-1] + 1e-12).all(), "the threshold rule keeps φ non-increasing"


def test_arcface_margin_zero_is_identity():
    cos = torch.linspace(-1, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(additive_angular_margin(cos, 0.0), cos)


def test_combined_margin_formula_and_special_cases():
    cos = torch.linspace(-0.99, 0.99, 101, dtype=torch.float64)
    theta = torch.acos(cos)
    torch.testing.assert_close(combined_margin(cos, 1.2, 0.3, 0.1), torch.cos(1.2 * theta + 0.3) - 0.1)
    torch.testing.assert_close(combined_margin(cos, 1.0, 0.0, 0.35), cos - 0.35)
    torch.testing.assert_close(combined_margin(cos, 1.0, 0.0, 0.0), cos)
    torch.testing.assert_close(angles(cos), theta)


# ------------------------------------------------------------------------------------ cosines
def test_cosine_logits_is_normalised_product_and_zero_safe():
    x = torch.randn(5, 3, dtype=torch.float64)
    w = torch.randn(4, 3, dtype=torch.float64)
    expected = torch.tensor([[float(x[i] @ w[j] / (x[i].norm() * w[j].norm())) for j in range(4)] for i in range(5)],
                            dtype=torch.float64)
    torch.testing.assert_close(cosine_logits(x, w), expected)
    x[0] = 0.0
    x.requires_grad_()
    out = cosine_logits(x, w)
    out.sum().backward()
    assert torch.equal(out[0].detach(), torch.zeros(4, dtype=torch.float64))
    assert torch.isfinite(x.grad).all()


def test_normalize_rows_equals_f_normalize_values_and_grads():
    x = torch.randn(7, 5, dtype=torch.float64)
    x[3] = 0.0
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    probe = torch.randn(7, 5, dtype=torch.float64)
    (normalize_rows(a) * probe).sum().backward()
    (torch.nn.functional.normalize(b, dim=1, eps=1e-12) * probe).sum().backward()
    torch.testing.assert_close(normalize_rows(x), torch.nn.functional.normalize(x, dim=1, eps=1e-12))
    torch.testing.assert_close(a.grad, b.grad)


def test_target_weight_cosines_gram_and_per_sample_paths_agree():
    w = torch.nn.functional.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1)
    labels = torch.tensor([5, 0, 2, 2, 1, 3, 4, 0])
    expected = torch.stack([w[int(label)] @ w.T for label in labels])
    torch.testing.assert_close(target_weight_cosines(w, labels), expected)          # C ≤ B: Gram rows
    torch.testing.assert_close(target_weight_cosines(w, labels[:3]), expected[:3])  # C > B: per sample


# --------------------------------------------------------------------------- hyperplane projections
def literal_projections(x, weight, labels):
    """004 eq. (5)-(6) with the normals built explicitly: H [B, d, C], h_ij = ŵ_{y_i} − ŵ_j, P_ij = x̂_i·ĥ_ij."""
    unit_x = x / x.norm(dim=1, keepdim=True)
    unit_w = (weight / weight.norm(dim=1, keepdim=True)).T            # Ŵ [d, C], the paper's N × C layout
    batch, classes = x.shape[0], weight.shape[0]
    w_plus = unit_w[None].expand(batch, -1, -1)                         # Ŵ⁺ [B, d, C]
    t_plus = unit_w[:, labels].T[:, :, None].expand(-1, -1, classes)   # T⁺ [B, d, C]
    normals = t_plus - w_plus                                           # README: ŵ_y − ŵ_j, not eq. (5)'s sign
    projections = torch.zeros(batch, classes, dtype=x.dtype)
    for i in range(batch):
        for j in range(classes):
            if j != int(labels[i]):
                unit_normal = normals[i, :, j] / normals[i, :, j].norm()
                projections[i, j] = unit_x[i] @ unit_normal
    return projections


@pytest.mark.parametrize("batch, classes", [(9, 5), (3, 7)])  # Gram rows (C ≤ B) and target-row products
def test_hyperplane_projections_equal_the_explicit_normals(batch, classes):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(classes, 6, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(batch) % classes
    fast = hyperplane_projections(x, w, labels)
    literal = literal_projections(x, w, labels)
    torch.testing.assert_close(fast, literal, rtol=1e-12, atol=1e-12)
    probe = torch.randn(batch, classes, generator=g, dtype=torch.float64)
    fast_grads = torch.autograd.grad((fast * probe).sum(), (x, w))
    literal_grads = torch.autograd.grad((literal * probe).sum(), (x, w))
    for a, b in zip(fast_grads, literal_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(fast.detach().gather(1, labels[:, None]), torch.zeros(batch, 1, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hyperplane_projections_without_a_hyperplane_are_zero_and_finite(dtype):
    """Two classes with the same weight direction share no hyperplane: P = 0 there, gradients finite."""
    w = torch.randn(4, 8, dtype=dtype)
    w[2] = 3.0 * w[1]
    w.requires_grad_()
    x = torch.randn(6, 8, dtype=dtype)
    x[5] = 0.0
    x.requires_grad_()
    labels = torch.tensor([1, 2, 0, 3, 1, 2])
    p = hyperplane_projections(x, w, labels)
    assert p[0, 2] == 0 and p[1, 1] == 0 and p[4, 2] == 0
    assert (p.abs() <= 1).all()
    assert torch.equal(p[5], torch.zeros(4, dtype=dtype))
    p.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()


# ------------------------------------------------------------- hand-written backwards (the fast forms)
def _unit(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm(dim=1, keepdim=True)


def test_normalize_rows_equals_f_normalize_values_and_gradients():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(7, 5, generator=g, dtype=torch.float64)
    t[3] = 0.0  # a zero row stays zero, its gradient g/eps as F.normalize's
    t.requires_grad_()
    reference = t.detach().clone().requires_grad_()
    probe = torch.randn(7, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(normalize_rows(t), torch.nn.functional.normalize(reference, dim=1, eps=1e-12))
    (normalize_rows(t) * probe).sum().backward()
    (torch.nn.functional.normalize(reference, dim=1, eps=1e-12) * probe).sum().backward()
    torch.testing.assert_close(t.grad, reference.grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(normalize_rows, (torch.randn(4, 3, dtype=torch.float64, requires_grad=True),))


def test_normalize_rows_keeps_the_dtype_of_half_inputs_gradients():
    t = torch.randn(4, 6, dtype=torch.bfloat16, requires_grad=True)
    normalize_rows(t).float().sum().backward()
    assert t.grad.dtype == torch.bfloat16 and torch.isfinite(t.grad.float()).all()


def test_fused_cosines_equal_two_products_values_and_gradients():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 6, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([5, 0, 5])  # a repeated label: both rows' shares land on the same class weight
    cos, target = cosines_and_target_weight_cosines(_unit(x), _unit(w), labels)
    expected_cos = _unit(x) @ _unit(w).T
    expected_target = _unit(w)[labels] @ _unit(w).T
    torch.testing.assert_close(cos, expected_cos, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(target, expected_target, rtol=1e-12, atol=1e-12)
    p1, p2 = torch.randn(3, 8, generator=g, dtype=torch.float64), torch.randn(3, 8, generator=g, dtype=torch.float64)
    fast = torch.autograd.grad((cos * p1).sum() + (target * p2).sum(), (x, w))
    slow = torch.autograd.grad((expected_cos * p1).sum() + (expected_target * p2).sum(), (x, w))
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: cosines_and_target_weight_cosines(a, b, labels), (x, w))


def _hinge_sums_by_autograd(cos, target_weight_cos, labels, margin):
    projections = hyperplane_projections_from_cosines(cos, target_weight_cos, labels)
    return (margin - projections).clamp_min(0.0).sum(1)


@pytest.mark.parametrize("margin", [0.1, 0.5, 1.0])
def test_hyperplane_hinge_sums_equal_the_autograd_expression(margin):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 4, generator=g, dtype=torch.float64)
    w[4] = 2.0 * w[1]  # coincident directions: no hyperplane between classes 1 and 4
    x = torch.randn(9, 4, generator=g, dtype=torch.float64)
    x[2] = 0.0         # a zero embedding
    labels = torch.tensor([1, 4, 0, 2, 3, 5, 1, 0, 4])
    cos = torch.nn.functional.normalize(x, dim=1) @ _unit(w).T  # the zero row's cosines are 0
    target = _unit(w)[labels] @ _unit(w).T
    cos, target = cos.requires_grad_(), target.requires_grad_()
    fast = hyperplane_hinge_sums(cos, target, labels, margin)
    slow = _hinge_sums_by_autograd(cos, target, labels, margin)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    probe = torch.randn(9, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((fast * probe).sum(), (cos, target)),
                    torch.autograd.grad((slow * probe).sum(), (cos, target))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # gradcheck away from the hinge's kinks (P = m and P = −1), on cosines of generic unit vectors
    cg = (torch.nn.functional.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
          @ _unit(w[:4]).T).requires_grad_()
    tg = (_unit(w[:4])[labels[:5] % 4] @ _unit(w[:4]).T).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: hyperplane_hinge_sums(a, b, labels[:5] % 4, margin), (cg, tg))
