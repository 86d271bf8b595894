"""Discriminant score trace(S_B) / trace(S_T), in the whole space and split by a linear classifier's subspace
(Direct-Sum, 003_3b01b74d9ee629e7.txt, Table 1; the score is Fukunaga's, the paper's reference [13]).

With μ the mean of all N embeddings and μ_c, n_c those of class c,

    S_T = (1/N) Σ_i (x_i − μ)(x_i − μ)ᵀ            total scatter
    S_B = Σ_c (n_c/N) (μ_c − μ)(μ_c − μ)ᵀ           between-class scatter

and σ_B/σ_T = tr S_B / tr S_T ∈ [0, 1] is the fraction of the variance that lies between the class means.
Table 1 measures it on x projected to the classifier subspace, Wᵀx with W an orthonormal basis of the span
of the class weights, and to its orthogonal complement, W_⊥ᵀx. The trace of a projected scatter does not
depend on which orthonormal basis is used, and W_⊥ᵀx has the scatter traces of the residual x − W Wᵀx, so
only the basis of the (at most C-dimensional) classifier subspace is built, from an SVD of the C×d weight;
no d×d decomposition is needed.
"""

from __future__ import annotations

import numpy as np

from featspace.metrics._inputs import ArrayLike, embeddings_array, labels_array, to_numpy

__all__ = ["discriminant_score", "classifier_subspace_basis"]


def classifier_subspace_basis(weight: ArrayLike, *, eps: float = 1e-3) -> np.ndarray:
    """Orthonormal basis [d, r] of the span of the rows of ``weight`` [C, d] (``nn.Linear`` layout).

    r is the numerical rank: singular values below ``eps`` × the largest are dropped, so a classifier whose
    weights are (nearly) linearly dependent — e.g. centred weights, or PEDCC points that sum to zero, rank
    C − 1 — gets the subspace it actually uses.
    """
    w = to_numpy(weight).astype(np.float64)
    if w.ndim != 2:
        raise ValueError(f"weight must have shape [C, d], got shape {tuple(w.shape)}")
    if not np.isfinite(w).all():
        raise ValueError("weight contains NaN or infinite values")
    _, singular_values, right_vectors = np.linalg.svd(w, full_matrices=False)
    if singular_values.size == 0 or singular_values[0] == 0:
        return np.zeros((w.shape[1], 0))
    rank = int(np.sum(singular_values > eps * singular_values[0]))
    return right_vectors[:rank].T


def _scatter_traces(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(tr S_B, tr S_T) of the rows of ``x`` grouped by ``y``."""
    centred = x - x.mean(axis=0)
    total = float(np.einsum("nd,nd->", centred, centred)) / x.shape[0]
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    sums = np.zeros((classes.size, x.shape[1]))
    np.add.at(sums, inverse, centred)
    means = sums / counts[:, None]  # μ_c − μ
    between = float(np.sum(counts * np.einsum("cd,cd->c", means, means))) / x.shape[0]
    return between, total


def _ratio(between: float, total: float) -> float:
    # a subspace where the embeddings have no variance at all has no discriminant score
    return between / total if total > 0 else float("nan")


def discriminant_score(
    embeddings: ArrayLike, labels: ArrayLike, *, weight: ArrayLike | None = None, eps: float = 1e-3
) -> dict[str, float]:
    """tr S_B / tr S_T of ``embeddings`` [N, d] with ``labels`` [N] (003 Table 1; see the module docstring).

    Returns ``{"total": ...}`` and, when ``weight`` [C, d] (a linear classifier's class weights) is given, also
    ``"classifier"`` (on Wᵀx) and ``"complement"`` (on W_⊥ᵀx); ``eps`` sets the numerical rank of ``weight``
    (``classifier_subspace_basis``). The bias plays no part. A score whose subspace carries no variance, or
    is empty (rank = d leaves no complement), is NaN.
    """
    x = embeddings_array(embeddings)
    y = labels_array(labels, x.shape[0])
    between, total = _scatter_traces(x, y)
    result = {"total": _ratio(between, total)}
    if weight is None:
        return result
    if to_numpy(weight).ndim != 2 or to_numpy(weight).shape[1] != x.shape[1]:
        raise ValueError(f"weight must have shape [C, {x.shape[1]}], got shape {tuple(to_numpy(weight).shape)}")
    basis = classifier_subspace_basis(weight, eps=eps)
    sub_between, sub_total = _scatter_traces(x @ basis, y) if basis.shape[1] else (0.0, 0.0)
    result["classifier"] = _ratio(sub_between, sub_total)
    if basis.shape[1] == x.shape[1]:
        result["complement"] = float("nan")
        return result
    # the residual x − W Wᵀx has the scatter traces of W_⊥ᵀx; computing it directly, rather than as
    # tr S − tr(WᵀSW), avoids cancellation when little variance is left outside the classifier subspace
    residual = x - (x @ basis) @ basis.T
    res_between, res_total = _scatter_traces(residual, y)
    result["complement"] = _ratio(res_between, res_total) if res_total > 1e-12 * total else float("nan")
    return result
