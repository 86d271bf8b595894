"""Projections onto the complement of the classifier subspace (003 eq. 7-11), direct and spectral, and the
discriminant score in each subspace (003 Table 1).

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

For the spectral sum (eq. 9-11) the row space of ``weight`` is taken from its thin SVD,
``weight = U diag(s) Vh`` with Vh [r, d], r = min(C, d), computed by :func:`spectral_basis` as the
eigendecomposition of the smaller Gram matrix (weightᵀweight [d, d] or weight·weightᵀ [C, C]) while the
condition number allows squaring it, and by ``torch.linalg.svd`` otherwise. The paper's full basis W̃ ∈ R^{d×d}
with d − C padded zero singular values gives

    W̃ diag(1 − λ̃^p) W̃ᵀ = I − Vhᵀ diag(λ̃^p) Vh,      λ̃ = s / max s,

because the padded directions (λ = 0) get weight 1 − 0 = 1 and W̃ W̃ᵀ = I. So the d×d SVD is never needed.
For p = 0 the paper's binary weights 1 − λ̃⁰ ∈ {0, 1} pick the basis vectors with λ = 0: featspace takes
0⁰ = 0 for zero singular values, so p = 0 is the exact complement projection, the ε → 0 limit of eq. 8.
Singular values below ``rtol · max s`` count as zero (numerical rank, as ``torch.linalg.matrix_rank``).
The evaluation basis of Table 1 (:func:`classifier_subspace_basis`, :func:`discriminant_scores`) uses the
coarser :data:`BASIS_RTOL` instead, so that nearly dependent trained weights get the subspace they use.

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

from featspace.functional.rows import class_means

__all__ = [
    "BASIS_RTOL",
    "GRAM_EIGH_TOLERANCE",
    "NO_VARIANCE_RTOL",
    "classifier_projection",
    "classifier_subspace_basis",
    "complement_projection",
    "discriminant_ratio",
    "discriminant_scores",
    "spectral_basis",
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


#: rank tolerance of :func:`classifier_subspace_basis`: singular values at or below this fraction of the largest
#: do not span the classifier subspace (evaluation; the training projections use machine epsilon instead)
BASIS_RTOL = 1e-3
#: a scatter trace at or below this fraction of Σ‖x_i‖² is no variance: float64 rounding of a projection leaves
#: about 1e-32 of it, a subspace the features really use far more
NO_VARIANCE_RTOL = 1e-12


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


#: the spectral projection takes its basis from an eigendecomposition of the smaller Gram matrix (weightᵀweight
#: [d, d] or weight·weightᵀ [C, C]) when eps·κ² ≤ this, κ = s_max / s_min the condition number of weight; above,
#: from the SVD of weight (see :func:`spectral_basis`)
GRAM_EIGH_TOLERANCE = 1e-4


def spectral_basis(weight: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
    """(U [C, r] or None, s [r] descending, Vh [r, d]) with weight = U diag(s) Vh, r = min(C, d), no gradient.

    From the eigendecomposition (``torch.linalg.eigh``) of the smaller Gram matrix: weightᵀweight = Vhᵀ diag(s²) Vh
    when C ≥ d (U is then not formed: None), weight·weightᵀ = U diag(s²) Uᵀ when C < d (Vh = diag(1/s) Uᵀ weight).
    At C = 1000, d = 512 that is a 512×512 symmetric eigenproblem instead of the SVD of a 1000×512 matrix,
    3.5× cheaper. Forming the Gram matrix squares the condition number κ: its eigenvalues and vectors carry
    relative errors ~eps·κ² where the SVD's carry ~eps·κ, so the Gram route is taken only while
    eps·κ² ≤ :data:`GRAM_EIGH_TOLERANCE` (float32: κ ≤ 29, float64: κ ≤ 6.7·10⁵; e.g. a random 1000×512 weight
    has κ ≈ 6) and the SVD otherwise (also for rank-deficient or zero weights). In float64 both routes agree
    to round-off (tests/test_functional_subspace.py).
    """
    num_classes, dim = weight.shape
    gram = weight.T @ weight if num_classes >= dim else weight @ weight.T
    eigenvalues, vectors = torch.linalg.eigh(gram)  # ascending
    top, bottom = eigenvalues[-1], eigenvalues[0]
    if bool((top > 0) & (torch.finfo(weight.dtype).eps * top <= GRAM_EIGH_TOLERANCE * bottom)):
        s = eigenvalues.flip(0).sqrt()
        vectors = vectors.flip(1)
        if num_classes >= dim:
            return None, s, vectors.T
        return vectors, s, (vectors.T @ weight) / s[:, None]
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    return u, s, vh


class _SpectralComplement(torch.autograd.Function):
    """y = x − x Vhᵀ diag(φ) Vh with φ_i = (s_i / s_1)^p on the kept singular values of weight."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, p: float, rtol: float) -> Tensor:  # type: ignore[override]
        u, s, vh = spectral_basis(weight)
        phi = spectral_weights(s, p, rtol)
        kept = s > rtol * s[:1]
        x_coords = x @ vh.T
        y = x - (x_coords * phi) @ vh
        ctx.save_for_backward(x, x_coords, weight, u, s, vh, phi, kept)
        ctx.p = p
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor):  # type: ignore[override]
        x, x_coords, weight, u, s, vh, phi, kept = ctx.saved_tensors
        grad_x = grad_weight = None
        grad_coords = grad_y @ vh.T
        if ctx.needs_input_grad[0]:
            grad_x = grad_y - (grad_coords * phi) @ vh  # the map x ↦ x − x F is symmetric
        if ctx.needs_input_grad[1]:
            grad_weight = _spectral_weight_grad(x, grad_y, x_coords, grad_coords, weight, u, s, vh, phi, kept, ctx.p)
        return grad_x, grad_weight, None, None


def _spectral_weight_grad(x: Tensor, grad_y: Tensor, x_coords: Tensor, grad_coords: Tensor, weight: Tensor,
                          u: Tensor | None, s: Tensor, vh: Tensor, phi: Tensor, kept: Tensor, p: float) -> Tensor:
    """∂L/∂weight for y = x − x F, F = f(weightᵀweight) = Σ_i φ_i v_i v_iᵀ (see the module docstring).

    With A = weightᵀweight = Q diag(a) Qᵀ and F̄ the symmetric part of ∂L/∂F = −xᵀ ȳ, Daleckii-Krein gives
    ∂L/∂A = Q (D ∘ QᵀF̄Q) Qᵀ with D_ij = (f_i − f_j)/(a_i − a_j) (f'(a_i) where a_i = a_j), and
    ∂L/∂weight = 2 weight ∂L/∂A. Since weight·Q = [U diag(s), 0], only rows of kept singular vectors
    survive; the block between a kept v_i and the zero-eigenvalue space has D = f_i / a_i (f(0) = 0), so it
    needs only (I − V Vᵀ), never the d×d basis. The dependence of φ on s_1 = max s adds
    (Σ_i (VᵀF̄V)_ii ∂φ_i/∂s_1) u_1 v_1ᵀ.

    In Vh-coordinates, with X = x Vhᵀ and Ȳ = ȳ Vhᵀ (both from the forward/backward already), R = VᵀF̄ =
    −½(Xᵀȳ + Ȳᵀx) [r, d] and M = VᵀF̄V = −½(XᵀȲ + ȲᵀX) [r, r] (no product with Vh), and the kept rows are
    2 s_i [(D ∘ M_kept − diag(φ/a) M_kept) Vh + diag(φ/a) R]_i: one [r, r]·[r, d] product. They are
    mapped back by U, or, where U was not formed (C ≥ d, see :func:`spectral_basis`), through
    U diag(s) = weight Vhᵀ: ∂L/∂weight = weight · 2 Vhᵀ [...], a [d, d] matrix applied once.
    """
    kept_f = kept.to(s.dtype)
    a = s.pow(2)
    a_safe = torch.where(kept, a, torch.ones_like(a))
    # f(a) = φ, f'(a) = (p/2) φ / a on kept values; nothing on the others (they are zero eigenvalues).
    f_prime = 0.5 * p * phi / a_safe * kept_f
    r_mat = (x_coords.T @ grad_y).add_(grad_coords.T @ x).mul_(-0.5)
    half = x_coords.T @ grad_coords
    m_mat = (half + half.T).mul_(-0.5)
    diff_a = a[:, None] - a[None, :]
    close = diff_a.abs() <= torch.finfo(a.dtype).eps ** 0.5 * a[:1].clamp_min(torch.finfo(a.dtype).tiny)
    divided = (phi[:, None] - phi[None, :]).div_(torch.where(close, torch.ones_like(diff_a), diff_a))
    divided = torch.where(close, (f_prime[:, None] + f_prime[None, :]).mul_(0.5), divided)
    across = phi / a_safe * kept_f  # the kept-to-complement block: (φ_i / a_i)(R − M_kept Vh)
    # (D − diag(φ/a)) ∘ M_kept, in place on the [r, r] temporaries
    kernel = divided.sub_(across[:, None]).mul_(m_mat).mul_(kept_f[None, :])
    inner = torch.addmm(across[:, None] * r_mat, kernel, vh)
    top = s[:1].clamp_min(torch.finfo(s.dtype).tiny)
    coefficient = (torch.diagonal(m_mat) * (-p * phi / top * kept_f)).sum() if p != 0 else None
    if u is not None:
        grad_weight = u @ (2.0 * (s * kept_f)[:, None] * inner)
        if coefficient is not None:
            grad_weight = grad_weight + coefficient * torch.outer(u[:, 0], vh[0])
        return grad_weight
    # u_i s_i = weight v_i: ∂L/∂weight = weight · (2 Σ_i v_i inner_i + (coefficient / s_1) v_1 v_1ᵀ)
    mat = vh.T @ (2.0 * kept_f[:, None] * inner)
    if coefficient is not None:
        mat = mat + (coefficient / top) * torch.outer(vh[0], vh[0])
    return weight @ mat


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


def classifier_subspace_basis(weight: Tensor, rtol: float = BASIS_RTOL) -> Tensor:
    """Orthonormal basis of the classifier subspace span(W), as rows: [r, d] with r its numerical rank.

    The paper's W with WᵀW = I (Sec. 2.4), transposed. ``x @ basis.T`` [n, r] are the coordinates "Wᵀx"
    of 003 Table 1 and ``x − (x @ basis.T) @ basis`` the complement part "W⊥W⊥ᵀx". Singular values of
    ``weight`` [C, d] at or below ``rtol`` × the largest are dropped (default :data:`BASIS_RTOL` = 1e-3, not
    machine epsilon as in :func:`spectral_complement_projection`): a classifier whose weights are nearly
    linearly dependent, e.g. centred weights or PEDCC points that sum to zero (rank C − 1) stored in float32,
    gets the subspace it actually uses instead of a direction of rounding noise. A zero weight has rank 0.
    Computed in at least float32, without gradient; meant for evaluation (:func:`discriminant_scores`).
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must have shape [C, d], got shape {tuple(weight.shape)}")
    work = weight.detach().to(torch.promote_types(weight.dtype, torch.float32))
    if not bool(torch.isfinite(work).all()):
        raise ValueError("weight contains NaN or infinite values")
    _, s, vh = torch.linalg.svd(work, full_matrices=False)
    rank = int((s > float(rtol) * s[:1]).sum()) if s.numel() else 0
    return vh[:rank]


def _scatter_traces(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(tr S_B, tr S_T) of the rows of x [n, k] grouped by labels y [n] (any integer values), as sums over
    samples: S_T = Σ_i (x_i − m)(x_i − m)ᵀ, S_B = Σ_c n_c (m_c − m)(m_c − m)ᵀ."""
    _, inverse = torch.unique(y, return_inverse=True)
    centred = x - x.mean(0)
    means, counts = class_means(centred, inverse, int(inverse.max()) + 1 if inverse.numel() else 1)  # m_c − m
    return (counts.to(x.dtype) * means.pow(2).sum(1)).sum(), centred.pow(2).sum()


def _ratio(between: Tensor, total: Tensor, floor: Tensor) -> Tensor:
    # trace(S_T) at or below the floor is no variance (or rounding noise of it): the ratio is undefined
    undefined = total <= floor
    ratio = between / torch.where(undefined, torch.ones_like(total), total)
    return torch.where(undefined, torch.full_like(ratio, float("nan")), ratio)


def _no_variance_floor(x: Tensor) -> Tensor:
    return NO_VARIANCE_RTOL * x.pow(2).sum()


def _check_labelled(x: Tensor, y: Tensor) -> Tensor:
    if x.dim() != 2 or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"x must be [n, d] and y [n]; got {tuple(x.shape)} and {tuple(y.shape)}")
    return x.to(torch.promote_types(x.dtype, torch.float32))


def discriminant_ratio(x: Tensor, y: Tensor) -> Tensor:
    """Fukunaga's discriminant score σ_B/σ_T = trace(S_B) / trace(S_T) ∈ [0, 1] (003 Table 1, ref. [13]).

        S_T = Σ_i (x_i − m)(x_i − m)ᵀ,   S_B = Σ_c n_c (m_c − m)(m_c − m)ᵀ

    (the paper's 1/N on both cancels). x: [n, d], y: [n] labels (any integer values) -> scalar in at least
    float32. Both traces are invariant to rotations, so the score of coordinates in an orthonormal basis
    equals that of the projected d-dimensional vectors. NaN where the samples have no variance: the ratio
    0/0 is undefined, and 0 would read as "no class separation" (:data:`NO_VARIANCE_RTOL` says what counts).
    """
    x = _check_labelled(x, y)
    between, total = _scatter_traces(x, y)
    return _ratio(between, total, _no_variance_floor(x))


def discriminant_scores(x: Tensor, y: Tensor, weight: Tensor | None = None,
                        rtol: float = BASIS_RTOL) -> dict[str, Tensor]:
    """σ_B/σ_T of x [n, d] with labels y [n] in the whole space and in the two subspaces of 003 Table 1.

    Returns ``{"total": ...}`` and, with ``weight`` [C, d] (a linear classifier's class weights; the bias plays
    no part), also ``"classifier"`` on Wᵀx and ``"complement"`` on W_⊥ᵀx, with W from
    :func:`classifier_subspace_basis` (``rtol`` its rank tolerance). Only the basis of the (at most
    C-dimensional) classifier subspace is built: W_⊥ᵀx has the scatter traces of the residual x − W Wᵀx,
    computed directly rather than as tr S − tr(WᵀSW), which would cancel when little variance lies outside
    the classifier subspace. Each value is a scalar tensor in at least float32, NaN where its subspace
    carries no variance (:data:`NO_VARIANCE_RTOL` of Σ‖x_i‖², so that features lying inside the classifier
    subspace leave a NaN complement, not a ratio of rounding noise) or is empty (rank 0 leaves no classifier
    subspace, rank d no complement).
    """
    x = _check_labelled(x, y)
    floor = _no_variance_floor(x)
    result = {"total": _ratio(*_scatter_traces(x, y), floor)}
    if weight is None:
        return result
    if weight.dim() != 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight must have shape [C, {x.shape[1]}], got shape {tuple(weight.shape)}")
    basis = classifier_subspace_basis(weight, rtol).to(x.dtype)  # [r, d]
    coordinates = x @ basis.T
    result["classifier"] = _ratio(*_scatter_traces(coordinates, y), floor)
    if basis.shape[0] == x.shape[1]:
        result["complement"] = torch.full_like(floor, float("nan"))
    else:
        result["complement"] = _ratio(*_scatter_traces(x - coordinates @ basis, y), floor)
    return result
