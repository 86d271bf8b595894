"""Projections onto the complement of the classifier subspace (003 eq. 7-11): direct and spectral.

The direct-sum paper (003_3b01b74d9ee629e7.txt, Sec. 2.4 and 3.4) writes its classifier as W ∈ R^{d×C}
(one column per class). featspace stores the same matrix in the ``nn.Linear`` layout, ``weight`` [C, d]
= Wᵀ, and embeddings as rows x [n, d]. Every formula below is the paper's, transposed accordingly:

    paper (column vectors)                      featspace (rows)
    Wᵀ x                                        x @ weight.T               [n, C]
    WᵀW                                         weight @ weight.T          [C, C]  (the Gram matrix G)
    x − W (WᵀW + εI)⁻¹ Wᵀ x      (eq. 8)        x − (x weightᵀ) (G + εI)⁻¹ weight

so no d×d matrix is formed: the direct projection costs O(n·d·C + C²·d + C³). When C > d (the
classifier subspace is then nearly everything) the same matrix is computed as A(A + εI)⁻¹ with
A = weightᵀweight [d, d], at O(n·d² + C·d² + d³).

For the spectral sum (eq. 9-11) the row space of ``weight`` is taken from a thin SVD of the [C, d]
matrix, ``weight = U diag(s) Vh`` with Vh [r, d], r = min(C, d). The paper's full basis W̃ ∈ R^{d×d}
with d − C padded zero singular values gives

    W̃ diag(1 − λ̃^p) W̃ᵀ = I − Vhᵀ diag(λ̃^p) Vh,      λ̃ = s / max s,

because the padded directions (λ = 0) get weight 1 − 0 = 1 and W̃ W̃ᵀ = I. So the d×d SVD is never needed.
For p = 0 the paper's binary weights 1 − λ̃⁰ ∈ {0, 1} pick the basis vectors with λ = 0: featspace takes
0⁰ = 0 for zero singular values, so p = 0 is the exact complement projection, the ε → 0 limit of eq. 8.
Singular values below ``rtol · max s`` count as zero (numerical rank, as ``torch.linalg.matrix_rank``).

Gradients of the spectral projection with respect to ``weight`` do not go through the backward of
``torch.linalg.svd``: that divides by s_i² − s_j² and returns NaN when two singular values coincide, which
is what a collapsed classifier (rows forming a regular simplex, all singular values equal) does. The
projection is a spectral function of weightᵀweight, whose derivative is finite at repeated singular values
(Daleckii-Krein: divided differences of the spectral weights, their derivative where two coincide); the
custom backward computes it without forming a d×d matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "classifier_projection",
    "classifier_subspace_basis",
    "complement_projection",
    "discriminant_ratio",
    "spectral_complement_projection",
    "spectral_weights",
]


def _check(x: Tensor, weight: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must have shape [n, d], got {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight must have shape [C, {x.shape[1]}] (the nn.Linear layout), got {tuple(weight.shape)}")


def _common_dtype(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    # At least float32: the projections subtract nearly equal quantities.
    dtype = torch.promote_types(torch.promote_types(x.dtype, weight.dtype), torch.float32)
    return x.to(dtype), weight.to(dtype)


def _classifier_component(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    num_classes, dim = weight.shape
    if num_classes <= dim:
        gram = weight @ weight.T  # [C, C]
        regularised = gram + eps * torch.eye(num_classes, dtype=gram.dtype, device=gram.device)
        coefficients = torch.linalg.solve(regularised, x @ weight.T, left=False)  # (x Wᵀ)(G + εI)⁻¹, G symmetric
        return coefficients @ weight
    # More classes than dimensions: the push-through identity weightᵀ(G + εI)⁻¹weight = A(A + εI)⁻¹ with
    # A = weightᵀweight [d, d] solves a d×d system instead of a C×C one.
    second_moment = weight.T @ weight
    regularised = second_moment + eps * torch.eye(dim, dtype=weight.dtype, device=weight.device)
    return torch.linalg.solve(regularised, x @ second_moment, left=False)


def complement_projection(x: Tensor, weight: Tensor, eps: float = 1e-3) -> Tensor:
    """Projection of x onto the complement of the classifier subspace, regularised (003 eq. 7-8).

        W⊥W⊥ᵀ x ≈ x − W (WᵀW + εI)⁻¹ Wᵀ x       (paper, W = weightᵀ ∈ R^{d×C})

    x: [n, d], weight: [C, d] -> [n, d], in at least float32. ε = 1e-3 is the paper's; it keeps the C×C
    system invertible when the classes' weights are (nearly) dependent. Because of it the result is not
    exactly orthogonal to the rows of weight: weight · P⊥x = ε (G + εI)⁻¹ weight x, small when the
    squared singular values of weight are large against ε. Gradients flow into both x and weight.
    """
    _check(x, weight)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    x, weight = _common_dtype(x, weight)
    return x - _classifier_component(x, weight, eps)


def classifier_projection(x: Tensor, weight: Tensor, eps: float = 1e-3) -> Tensor:
    """Projection of x onto the classifier subspace span(W), regularised as eq. 8: W (WᵀW + εI)⁻¹ Wᵀ x.

    The "W Wᵀ x" of 003 Sec. 2.4 and Table 3 i-2; equals ``x − complement_projection(x, weight, eps)``.
    x: [n, d], weight: [C, d] -> [n, d].
    """
    _check(x, weight)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    x, weight = _common_dtype(x, weight)
    return _classifier_component(x, weight, eps)


def _default_rtol(weight: Tensor) -> float:
    return max(weight.shape) * torch.finfo(weight.dtype).eps


def spectral_weights(singular_values: Tensor, p: float, rtol: float) -> Tensor:
    """λ̃^p of 003 eq. 10-11 for descending singular values [r]: (s / max s)^p, with 0 for s ≤ rtol·max s.

    The zero for (numerically) zero singular values is the paper's padding convention, also at p = 0.
    """
    top = singular_values[:1].clamp_min(torch.finfo(singular_values.dtype).tiny)
    kept = singular_values > rtol * singular_values[:1]
    normalised = torch.where(kept, singular_values / top, torch.ones_like(singular_values))
    return torch.where(kept, normalised.pow(p), torch.zeros_like(singular_values))


class _SpectralComplement(torch.autograd.Function):
    """y = x − x Vhᵀ diag(φ) Vh with φ_i = (s_i / s_1)^p on the kept singular values of weight."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, p: float, rtol: float) -> Tensor:  # type: ignore[override]
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        phi = spectral_weights(s, p, rtol)
        kept = s > rtol * s[:1]
        y = x - ((x @ vh.T) * phi) @ vh
        ctx.save_for_backward(x, u, s, vh, phi, kept)
        ctx.p = p
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor):  # type: ignore[override]
        x, u, s, vh, phi, kept = ctx.saved_tensors
        p = ctx.p
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_y - ((grad_y @ vh.T) * phi) @ vh  # the map x ↦ x − x F is symmetric
        if ctx.needs_input_grad[1]:
            grad_weight = _spectral_weight_grad(x, grad_y, u, s, vh, phi, kept, p)
        return grad_x, grad_weight, None, None


def _spectral_weight_grad(x: Tensor, grad_y: Tensor, u: Tensor, s: Tensor, vh: Tensor, phi: Tensor,
                          kept: Tensor, p: float) -> Tensor:
    """∂L/∂weight for y = x − x F, F = f(weightᵀweight) = Σ_i φ_i v_i v_iᵀ (see the module docstring).

    With A = weightᵀweight = Q diag(a) Qᵀ and F̄ the symmetric part of ∂L/∂F = −xᵀ ȳ, Daleckii-Krein gives
    ∂L/∂A = Q (D ∘ QᵀF̄Q) Qᵀ with D_ij = (f_i − f_j)/(a_i − a_j) (f'(a_i) where a_i = a_j), and
    ∂L/∂weight = 2 weight ∂L/∂A. Since weight·Q = [U diag(s), 0], only rows of kept singular vectors
    survive; the block between a kept v_i and the zero-eigenvalue space has D = f_i / a_i (f(0) = 0), so it
    needs only (I − V Vᵀ), never the d×d basis. The dependence of φ on s_1 = max s adds
    (Σ_i (VᵀF̄V)_ii ∂φ_i/∂s_1) u_1 v_1ᵀ.
    """
    kept_f = kept.to(s.dtype)
    a = s.pow(2)
    a_safe = torch.where(kept, a, torch.ones_like(a))
    # f(a) = φ, f'(a) = (p/2) φ / a on kept values; nothing on the others (they are zero eigenvalues).
    f_prime = 0.5 * p * phi / a_safe * kept_f
    # vhᵀ-coordinates: A = x Vᵀ, B = ȳ Vᵀ (paper's V); R = VᵀF̄ [r, d], M = VᵀF̄V [r, r].
    x_coords = x @ vh.T
    grad_coords = grad_y @ vh.T
    r_mat = -0.5 * (x_coords.T @ grad_y + grad_coords.T @ x)
    m_mat = r_mat @ vh.T
    diff_a = a[:, None] - a[None, :]
    diff_f = phi[:, None] - phi[None, :]
    close = diff_a.abs() <= torch.finfo(a.dtype).eps ** 0.5 * a[:1].clamp_min(torch.finfo(a.dtype).tiny)
    divided = torch.where(close, 0.5 * (f_prime[:, None] + f_prime[None, :]),
                          diff_f / torch.where(close, torch.ones_like(diff_a), diff_a))
    m_kept = m_mat * kept_f[None, :]
    within = (divided * m_kept) @ vh
    across = (phi / a_safe * kept_f)[:, None] * (r_mat - m_kept @ vh)
    rows = 2.0 * (s * kept_f)[:, None] * (within + across)
    grad_weight = u @ rows
    if p != 0:
        top = s[:1].clamp_min(torch.finfo(s.dtype).tiny)
        d_phi_d_top = -p * phi / top * kept_f
        coefficient = (torch.diagonal(m_mat) * d_phi_d_top).sum()
        grad_weight = grad_weight + coefficient * torch.outer(u[:, 0], vh[0])
    return grad_weight


def spectral_complement_projection(x: Tensor, weight: Tensor, p: float, rtol: float | None = None) -> Tensor:
    """Spectral-sum projection of 003 eq. 9-11: W̃ diag(1 − λ̃^p) W̃ᵀ x.

    W = W̃ diag(λ) Vᵀ (eq. 9, W = weightᵀ, λ padded with zeros to length d), λ̃ = λ / max λ (eq. 10);
    computed as x − (x Vhᵀ) diag(λ̃^p) Vh from the thin SVD of weight (module docstring).

    x: [n, d], weight: [C, d] (any C, also C ≥ d, the case the spectral sum was made for) -> [n, d],
    in at least float32. p ≥ 0 (the paper uses 0 ≤ p ≤ 1; p = 0 is the exact complement projection, the
    ε → 0 limit of :func:`complement_projection`). ``rtol``: singular values ≤ rtol·max count as zero;
    default max(C, d)·machine epsilon. Gradients flow into x and weight (custom backward, finite at
    repeated singular values; as λ̃^p itself, it grows like s^{p−1} for a tiny nonzero s when p < 1).
    """
    _check(x, weight)
    if not p >= 0:
        raise ValueError(f"p must be >= 0, got {p!r}")
    x, weight = _common_dtype(x, weight)
    tolerance = _default_rtol(weight) if rtol is None else float(rtol)
    return _SpectralComplement.apply(x, weight, float(p), tolerance)


def classifier_subspace_basis(weight: Tensor, rtol: float | None = None) -> Tensor:
    """Orthonormal basis of the classifier subspace span(W), as rows: [r, d] with r its numerical rank.

    The paper's W with WᵀW = I (Sec. 2.4), transposed. ``x @ basis.T`` [n, r] are the coordinates "Wᵀx"
    of 003 Table 1 and ``x − (x @ basis.T) @ basis`` the complement part "W⊥W⊥ᵀx". Not differentiable
    through a change of rank; meant for evaluation (e.g. the discriminant score in each subspace).
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must have shape [C, d], got {tuple(weight.shape)}")
    work = weight.detach().to(torch.promote_types(weight.dtype, torch.float32))
    _, s, vh = torch.linalg.svd(work, full_matrices=False)
    tolerance = _default_rtol(work) if rtol is None else float(rtol)
    rank = int((s > tolerance * s[:1]).sum()) if s.numel() else 0
    return vh[:rank]


def discriminant_ratio(x: Tensor, y: Tensor) -> Tensor:
    """Fukunaga's discriminant score trace(S_B) / trace(S_T) ∈ [0, 1] (003 Table 1, ref. [13]).

        S_T = Σ_i (x_i − m)(x_i − m)ᵀ,   S_B = Σ_c n_c (m_c − m)(m_c − m)ᵀ

    x: [n, d], y: [n] labels -> scalar in at least float32. Both traces are invariant to rotations, so the
    score of coordinates in an orthonormal basis equals that of the projected d-dimensional vectors.
    0 when all samples coincide (trace(S_T) = 0).
    """
    if x.dim() != 2 or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"x must be [n, d] and y [n]; got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    _, inverse = torch.unique(y, return_inverse=True)
    k = int(inverse.max()) + 1
    member = torch.zeros(x.shape[0], k, dtype=x.dtype, device=x.device).scatter_(1, inverse[:, None], 1.0)
    counts = member.sum(0)
    centred = x - x.mean(0)
    class_means = (member.T @ centred) / counts[:, None]
    total = centred.pow(2).sum()
    between = (counts * class_means.pow(2).sum(1)).sum()
    return between / total.clamp_min(torch.finfo(x.dtype).tiny)
