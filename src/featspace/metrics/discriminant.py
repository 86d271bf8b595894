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

The math is ``featspace.functional.discriminant_scores`` and ``classifier_subspace_basis``; this module turns
tensors or arrays into float64 and the results into floats. Conventions (documented there): the rank of the
weight counts singular values above 1e-3 × the largest (``BASIS_RTOL``), and a subspace without variance
gives NaN — the ratio 0/0 is undefined, and 0 would read as "no class separation".
"""

from __future__ import annotations

import numpy as np
import torch

from featspace import functional
from featspace.metrics._inputs import ArrayLike, as_tensor, embeddings_array, labels_array, to_numpy

__all__ = ["discriminant_score", "classifier_subspace_basis"]


def _weight_tensor(weight: ArrayLike) -> torch.Tensor:
    return as_tensor(np.asarray(to_numpy(weight), dtype=np.float64))


def classifier_subspace_basis(weight: ArrayLike, *, eps: float = functional.BASIS_RTOL) -> np.ndarray:
    """Orthonormal basis [d, r] (float64, as columns) of the span of the rows of ``weight`` [C, d] (``nn.Linear``
    layout): ``featspace.functional.classifier_subspace_basis`` (which returns the rows [r, d]), transposed.

    r is the numerical rank: singular values at or below ``eps`` × the largest are dropped, so a classifier whose
    weights are (nearly) linearly dependent — e.g. centred weights, or PEDCC points that sum to zero, rank
    C − 1 — gets the subspace it actually uses.
    """
    return functional.classifier_subspace_basis(_weight_tensor(weight), rtol=eps).numpy().T


def discriminant_score(
    embeddings: ArrayLike, labels: ArrayLike, *, weight: ArrayLike | None = None, eps: float = functional.BASIS_RTOL
) -> dict[str, float]:
    """tr S_B / tr S_T of ``embeddings`` [N, d] with ``labels`` [N] (003 Table 1; see the module docstring).

    Returns ``{"total": ...}`` and, when ``weight`` [C, d] (a linear classifier's class weights) is given, also
    ``"classifier"`` (on Wᵀx) and ``"complement"`` (on W_⊥ᵀx); ``eps`` sets the numerical rank of ``weight``
    (``classifier_subspace_basis``). The bias plays no part. A score whose subspace carries no variance, or
    is empty (rank = d leaves no complement), is NaN. Computed in float64.
    """
    x = as_tensor(embeddings_array(embeddings))
    y = as_tensor(labels_array(labels, x.shape[0]))
    w = None if weight is None else _weight_tensor(weight)
    scores = functional.discriminant_scores(x, y, w, rtol=eps)
    return {key: float(value) for key, value in scores.items()}
