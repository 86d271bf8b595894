"""Angular math shared by the cosine-margin heads and HASeparator (004 eq. 4-8).

Every function here is pure (no parameters, no state) and works on any floating dtype; callers upcast
half precision first (``featspace.heads.base.upcast_half``). Notation: x̂ = x/‖x‖, ŵ_j = w_j/‖w_j‖,
cos θ_j = x̂·ŵ_j, θ_j ∈ [0, π]. Shapes: x [B, d], weight [C, d] (``nn.Linear`` layout), labels [B].

Where an angle is needed (``acos``) or sin θ = √(1 − cos²θ), the cosine is kept ``finfo(dtype).eps``
away from ±1: the derivative of acos and of √(1 − c²) is infinite at c = ±1 (an embedding exactly
parallel to a class weight), so the functions flatten there instead of returning an infinite gradient.
The values move by at most √(2·eps) (3·10⁻⁴ in float32, 2·10⁻⁸ in float64).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

# the unit rows every cosine here starts from; featspace.functional.rows owns them
from featspace.functional.rows import NORM_EPS, normalize_rows

__all__ = [
    "MAX_MULTIPLICATIVE_MARGIN",
    "additive_angular_margin",
    "angles",
    "combined_margin",
    "cosine_logits",
    "cosines_and_target_weight_cosines",
    "hyperplane_projections",
    "hyperplane_hinge_sums",
    "hyperplane_projections_from_cosines",
    "multiplicative_angular_margin",
    "target_weight_cosines",
]


def cosine_logits(x: Tensor, weight: Tensor, eps: float = NORM_EPS) -> Tensor:
    """cos θ_ij = x̂_i·ŵ_j, the cosine layer of NormFace / CosFace / ArcFace / 004 eq. (4) without σ.

    x [B, d], weight [C, d] -> [B, C]. Norms are floored at ``eps``, so a zero embedding (or a zero
    class weight) gives cosines 0 and finite gradients.
    """
    return F.linear(normalize_rows(x, eps), normalize_rows(weight, eps))


class _CosinesAndTargetWeightCosines(torch.autograd.Function):
    """(x̂·Ŵᵀ, Ŵ_y·Ŵᵀ) as one product [x̂; Ŵ_y]·Ŵᵀ (see :func:`cosines_and_target_weight_cosines`)."""

    @staticmethod
    def forward(ctx, unit_x: Tensor, unit_weight: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        labels = labels.long()
        rows = torch.cat([unit_x, unit_weight.index_select(0, labels).to(unit_x.dtype)])  # [2B, d]
        both = rows @ unit_weight.to(rows.dtype).t()                                        # [2B, C]
        ctx.save_for_backward(rows, unit_weight, labels)
        ctx.dtypes = (unit_x.dtype, unit_weight.dtype)
        batch = unit_x.shape[0]
        return both[:batch], both[batch:]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_cos: Tensor, grad_target: Tensor) -> tuple[Tensor, Tensor, None]:
        rows, unit_weight, labels = ctx.saved_tensors
        grad_both = torch.cat([grad_cos, grad_target]).to(rows.dtype)   # [2B, C]
        grad_rows = grad_both @ unit_weight.to(rows.dtype)              # [2B, d]
        grad_weight = grad_both.t() @ rows                              # [C, d]: both products' share of ∂Ŵ
        batch = grad_cos.shape[0]
        grad_weight.index_add_(0, labels, grad_rows[batch:])           # the gathered rows Ŵ_y, in place
        return grad_rows[:batch].to(ctx.dtypes[0]), grad_weight.to(ctx.dtypes[1]), None


def cosines_and_target_weight_cosines(unit_x: Tensor, unit_weight: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """cos [B, C] = x̂_i·ŵ_j and ŵ_{y_i}·ŵ_j [B, C] from unit rows x̂ [B, d] and Ŵ [C, d], for C > B.

    One product [x̂; Ŵ_y]·Ŵᵀ of [2B, d] by [d, C] instead of two, and a backward that forms ∂Ŵ with one
    product and adds the gathered rows' share in place: two fresh [C, d] tensors fewer than autograd
    through ``index_select`` and two ``linear`` calls, which at C = 1000 is a fifth of HASeparator's step.
    When C ≤ B, ``F.linear(x̂, Ŵ)`` and :func:`target_weight_cosines` (the Gram rows) are cheaper.
    """
    return _CosinesAndTargetWeightCosines.apply(unit_x, unit_weight, labels)


def target_weight_cosines(unit_weight: Tensor, labels: Tensor) -> Tensor:
    """ŵ_{y_i}·ŵ_j [B, C] for unit class weights [C, d] and labels [B], by the cheaper of two products.

    Rows of the Gram matrix ŴŴᵀ [C, C] when C ≤ B (C²·d multiply-adds), otherwise Ŵ_y·Ŵᵀ (B·C·d).
    """
    labels = labels.long()
    if unit_weight.shape[0] <= labels.shape[0]:
        return F.linear(unit_weight, unit_weight).index_select(0, labels)
    return F.linear(unit_weight.index_select(0, labels), unit_weight)


def _away_from_one(cos: Tensor) -> Tensor:
    eps = torch.finfo(cos.dtype).eps
    return cos.clamp(-1.0 + eps, 1.0 - eps)


def angles(cos: Tensor) -> Tensor:
    """θ = acos(cos) in radians, any shape, with the cosine kept ``eps`` away from ±1 (module docstring)."""
    return torch.acos(_away_from_one(cos))


def additive_angular_margin(cos: Tensor, margin: float) -> Tensor:
    """ArcFace's target logit in cosine units, φ(θ) = cos(θ + m), with its authors' threshold rule.

    φ(θ) = cos θ·cos m − sin θ·sin m   where θ + m ≤ π  (i.e. cos θ ≥ cos(π − m)),
    φ(θ) = cos θ − m·sin m              where θ + m > π.

    The second branch is the rule of the ArcFace authors' code (InsightFace, ``th``/``mm``): beyond
    θ = π − m, cos(θ + m) would rise again and reward a sample for moving away from its class; the
    replacement steps down by cos m + m·sin m − 1 ∈ [0, m²/2] at θ = π − m, so φ stays non-increasing in θ
    for m ≤ π/2 (the ``arcface`` head's range). With m = 0 both branches are cos θ. Any shape in, same
    shape out; sin θ = √(1 − cos²θ) floored as in the module docstring.
    """
    eps = torch.finfo(cos.dtype).eps
    sin = torch.sqrt((1.0 - cos * cos).clamp_min(eps))
    rotated = cos * math.cos(margin) - sin * math.sin(margin)
    return torch.where(cos >= math.cos(math.pi - margin), rotated, cos - margin * math.sin(margin))


def combined_margin(cos: Tensor, margin1: float, margin2: float, margin3: float) -> Tensor:
    """InsightFace's combined margin in cosine units: φ(θ) = cos(m1·θ + m2) − m3.

    (1, m, 0) is ArcFace without its threshold rule, (1, 0, m) is CosFace, (1, 0, 0) is NormFace. As in the
    InsightFace code that introduced it, no threshold rule is applied: where m1·θ + m2 > π, φ is no longer
    decreasing in θ. Any shape in, same shape out.
    """
    return torch.cos(margin1 * angles(cos) + margin2) - margin3


def _chebyshev(cos: Tensor, degree: int) -> Tensor:
    """cos(mθ) as the Chebyshev polynomial T_m(cos θ): no acos, so smooth up to cos θ = ±1."""
    previous, current = torch.ones_like(cos), cos
    if degree == 0:
        return previous
    for _ in range(degree - 1):
        previous, current = current, 2.0 * cos * current - previous
    return current


#: the largest multiplicative margin m accepted: the papers use m ≤ 4; ψ has ⌈m⌉ pieces and an integer m costs m
#: steps of the Chebyshev recursion, so an unbounded m (1e308) would never finish, and beyond a few dozen the
#: target logit is a staircase that carries no useful gradient anyway
MAX_MULTIPLICATIVE_MARGIN = 64


def multiplicative_angular_margin(cos: Tensor, margin: float) -> Tensor:
    """ψ(θ) = (−1)^k·cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m]: the target logit of L-Softmax and SphereFace.

    L-Softmax (Liu et al., ICML 2016) and A-Softmax / SphereFace (Liu et al., CVPR 2017) replace
    cos θ_y by ψ(θ_y), with k = ⌊mθ/π⌋. ψ is continuous (both sides equal 1 − 2k at θ = kπ/m), strictly
    decreasing on [0, π], and equals cos θ for m = 1.

    featspace departs from the papers (which take m a positive integer) by allowing any real m ≥ 1, as
    the LACE paper's setting m = 1.35 needs: the same k = ⌊mθ/π⌋ rule applies, the last piece simply
    ends at θ = π before reaching (k+1)π/m, and continuity and monotonicity still hold. For an integer m,
    cos(mθ) is evaluated as the Chebyshev polynomial T_m(cos θ) and k by comparing cos θ with cos(jπ/m)
    (no acos, exact gradients up to cos θ = ±1, as the L-Softmax code does); for a non-integer m through
    θ = acos(cos θ) (module docstring). Any shape in, same shape out.
    """
    if not 1 <= margin <= MAX_MULTIPLICATIVE_MARGIN:
        raise ValueError(f"multiplicative margin must lie in [1, {MAX_MULTIPLICATIVE_MARGIN}], got {margin!r}")
    if float(margin).is_integer():
        degree = int(margin)
        k = torch.zeros_like(cos)
        with torch.no_grad():
            for j in range(1, degree):
                k += (cos <= math.cos(j * math.pi / degree)).to(cos.dtype)
        cos_m_theta = _chebyshev(cos, degree)
    else:
        theta = angles(cos)
        k = torch.floor(theta.detach() * (margin / math.pi))
        cos_m_theta = torch.cos(margin * theta)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * cos_m_theta - 2.0 * k


def hyperplane_projections_from_cosines(cos: Tensor, target_weight_cos: Tensor, labels: Tensor) -> Tensor:
    """x̂_i·ĥ_ij from cosines already computed: the fast form of 004 eq. (5)-(6).

    cos [B, C]: x̂_i·ŵ_j.  target_weight_cos [B, C]: ŵ_{y_i}·ŵ_j.  labels [B].  Returns P [B, C] with

        P_ij = (x̂_i·ŵ_{y_i} − x̂_i·ŵ_j) / ‖ŵ_{y_i} − ŵ_j‖,   ‖ŵ_{y_i} − ŵ_j‖² = 2 − 2·ŵ_{y_i}·ŵ_j,

    which is x̂_i·ĥ_ij with ĥ_ij = (ŵ_{y_i} − ŵ_j)/‖ŵ_{y_i} − ŵ_j‖ by linearity, without the B×d×C tensor
    of normals. Columns with no hyperplane hold 0, as the authors' code gives them (an L2-normalised zero
    normal): always the column j = y_i, and any j whose weight direction coincides with ŵ_{y_i}
    (‖ŵ_{y_i} − ŵ_j‖² ≤ 100·eps of the dtype, where the fast form's round-off would dominate). P is
    clamped to [−1, 1], the range of a product of unit vectors, against that round-off.
    """
    squared_normal_norm = 2.0 - 2.0 * target_weight_cos
    tolerance = 100.0 * torch.finfo(cos.dtype).eps
    no_hyperplane = squared_normal_norm <= tolerance
    no_hyperplane.scatter_(1, labels.long()[:, None], True)
    target_cos = cos.gather(1, labels.long()[:, None])
    # the floor keeps rsqrt's backward finite in the masked entries, whose gradient torch.where then zeroes
    projections = (target_cos - cos) * torch.rsqrt(squared_normal_norm.clamp_min(tolerance))
    return torch.where(no_hyperplane, torch.zeros_like(projections), projections.clamp(-1.0, 1.0))


class _HyperplaneHingeSums(torch.autograd.Function):
    """Σ_j max(0, m − P_ij) per sample with a hand-written backward (see :func:`hyperplane_hinge_sums`)."""

    @staticmethod
    def forward(ctx, cos: Tensor, target_weight_cos: Tensor, labels: Tensor, margin: float) -> Tensor:
        labels = labels.long()[:, None]
        squared_normal_norm = 2.0 - 2.0 * target_weight_cos
        tolerance = 100.0 * torch.finfo(cos.dtype).eps
        no_hyperplane = squared_normal_norm <= tolerance
        no_hyperplane.scatter_(1, labels, True)
        inv_norm = squared_normal_norm.clamp_min_(tolerance).rsqrt_()           # r_ij = 1/‖ŵ_y − ŵ_j‖
        projections = (cos.gather(1, labels) - cos).mul_(inv_norm).masked_fill_(no_hyperplane, 0.0)
        # J = m − min(clamp(P, −1, 1), m): its slope in P is −1 where −1 ≤ P < m, 0 elsewhere
        active = (projections < margin) & (projections >= -1.0) & ~no_hyperplane
        ctx.save_for_backward(labels, inv_norm, projections, active)
        return (margin - projections.clamp(-1.0, 1.0)).clamp_min_(0.0).sum(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sums: Tensor) -> tuple[Tensor | None, ...]:
        labels, inv_norm, projections, active = ctx.saved_tensors
        # ∂J/∂cos_ij = r_ij and ∂J/∂cos_iy = −Σ_j r_ij (P_ij = (cos_iy − cos_ij)·r_ij), on active entries
        grad_cos = (inv_norm * active).mul_(grad_sums[:, None])
        grad_cos.scatter_add_(1, labels, -grad_cos.sum(1, keepdim=True))
        grad_target_weight_cos = None
        if ctx.needs_input_grad[1]:
            # ∂P_ij/∂(ŵ_y·ŵ_j) = (cos_iy − cos_ij)·r_ij³ = P_ij·r_ij², hence ∂J/∂(ŵ_y·ŵ_j) = −P_ij·r_ij²
            grad_target_weight_cos = (grad_cos * projections).mul_(inv_norm).neg_()
            grad_target_weight_cos.scatter_(1, labels, 0.0)
        return grad_cos, grad_target_weight_cos, None, None


def hyperplane_hinge_sums(cos: Tensor, target_weight_cos: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Σ_j J(P_ij) = Σ_j max(0, m − P_ij) per sample [B]: HASeparator's penalty (004 eq. 7) before its batch mean.

    cos [B, C]: x̂_i·ŵ_j; target_weight_cos [B, C]: ŵ_{y_i}·ŵ_j; labels [B]; margin m. P is exactly
    :func:`hyperplane_projections_from_cosines` (clamped to [−1, 1]; 0 where no hyperplane exists, so every
    such column, j = y_i included, adds the constant m with no gradient), and so is the value; the backward is
    written out by hand (∂J/∂cos_ij = r_ij, ∂J/∂cos_iy = −Σ_j r_ij, ∂J/∂(ŵ_y·ŵ_j) = −P_ij·r_ij² on the entries
    where −1 ≤ P_ij < m, r_ij = 1/‖ŵ_{y_i} − ŵ_j‖), which makes a handful of passes over [B, C] where autograd
    through the expression makes several dozen: at C = 1000 these passes, not the products, dominate the head.
    """
    return _HyperplaneHingeSums.apply(cos, target_weight_cos, labels, margin)


def hyperplane_projections(x: Tensor, weight: Tensor, labels: Tensor, eps: float = NORM_EPS) -> Tensor:
    """P_ij = x̂_i·ĥ_ij, the projections of HASeparator (004 eq. 5-6) on the unit normals ĥ_ij ∝ ŵ_{y_i} − ŵ_j.

    x [B, d], weight [C, d], labels [B] -> [B, C]; the column j = y_i holds 0 (no hyperplane; see
    :func:`hyperplane_projections_from_cosines`). The normal's sign follows Section III-A and the authors'
    code (ŵ_y − ŵ_j, positive on the target's side), not eq. (5) as printed (see
    ``shared/papers/README.md``). Memory O(B·C + C·d): besides the cosines, one product of unit weights
    (:func:`target_weight_cosines`).
    """
    unit_weight = normalize_rows(weight, eps)
    cos = F.linear(normalize_rows(x, eps), unit_weight)
    return hyperplane_projections_from_cosines(cos, target_weight_cosines(unit_weight, labels), labels)
