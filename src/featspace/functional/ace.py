"""The adaptive cosine estimator (LACE paper 000, eq. 3-4): scores in a learned whitened space.

ACE (000_96dfa70546181807.txt, eq. 3) compares a sample x with a target signature s in the space whitened
by the background statistics (μ_b, Σ_b):

    D_ACE(x, s) = sᵀ Σ_b⁻¹ (x − μ_b) / ( √(sᵀ Σ_b⁻¹ s) · √((x − μ_b)ᵀ Σ_b⁻¹ (x − μ_b)) )

(the printed eq. 3 nests the second square root inside the first; the formula above is the intended one,
the cosine that Section 3.1 and the authors' code compute). With a factor ``whitening`` W such that
Σ_b⁻¹ = Wᵀ W, this is the cosine between x̂ = W (x − μ_b) and ŝ = W s, which needs no inverse, SVD or
eigendecomposition: that is the fast form computed here. The scores depend on W only through WᵀW, so any
factor of Σ_b⁻¹ gives the same result (the paper's D^{-1/2} Uᵀ is one such factor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ace_scores", "whiten"]


def _at_least_float32(t: Tensor) -> Tensor:
    # Local twin of heads.base.upcast_half: functional must not import the heads package.
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def whiten(v: Tensor, whitening: Tensor | None) -> Tensor:
    """Apply a whitening factor to the last dimension of ``v``: W v.

    whitening: None (identity), [d, d] (one global factor: v [..., d] -> [..., d]) or [C, d, d]
    (one factor per class: v [C, d] -> [C, d] row c whitened by W_c; v [d] -> [C, d]).
    """
    if whitening is None:
        return v
    if whitening.dim() == 2:
        return F.linear(v, whitening)
    if v.dim() == 1:
        return torch.einsum("cij,j->ci", whitening, v)
    return torch.einsum("cij,cj->ci", whitening, v)


def ace_scores(
    x: Tensor,
    signatures: Tensor,
    background_mean: Tensor | None = None,
    whitening: Tensor | None = None,
    eps: float = 1e-12,
) -> Tensor:
    """Signed ACE cosines between embeddings and class signatures (000 eq. 3, as used in eq. 4).

    scores[b, c] = ŝ_cᵀ x̂_bc / (‖ŝ_c‖ ‖x̂_bc‖),  x̂_bc = W_c (x_b − μ_c),  ŝ_c = W_c s_c,

    so that Σ_c⁻¹ = W_cᵀ W_c. With one global background (the paper), W_c = W and μ_c = μ_b for every c.

    Shapes:
        x:               [B, d] embeddings
        signatures:      [C, d] target signatures s_c (not centred, as in eq. 3 and the authors' code)
        background_mean: None (μ = 0), [d] global, or [C, d] per class
        whitening:       None (W = I), [d, d] global, or [C, d, d] per class
        returns:         [B, C], each entry in [−1, 1], at least float32 (float64 stays float64)

    Cost: global background O(B·d² + C·d² + B·C·d) with no B×C×d tensor; a per-class background needs
    the B×C×d tensor of the x̂_bc (never B×C×d×d). Norms are clamped below by ``eps`` (as F.normalize), so a
    sample at the background mean scores 0 against every class, with finite gradients.
    """
    if x.dim() != 2 or signatures.dim() != 2 or x.shape[1] != signatures.shape[1]:
        raise ValueError(f"ace_scores: x must be [B, d] and signatures [C, d], got {tuple(x.shape)} and "
                         f"{tuple(signatures.shape)}")
    num_classes, dim = signatures.shape
    if background_mean is not None and background_mean.shape not in ((dim,), (num_classes, dim)):
        raise ValueError(f"ace_scores: background_mean must be [{dim}] or [{num_classes}, {dim}], "
                         f"got {tuple(background_mean.shape)}")
    if whitening is not None and whitening.shape not in ((dim, dim), (num_classes, dim, dim)):
        raise ValueError(f"ace_scores: whitening must be [{dim}, {dim}] or [{num_classes}, {dim}, {dim}], "
                         f"got {tuple(whitening.shape)}")
    per_class = (background_mean is not None and background_mean.dim() == 2) or (
        whitening is not None and whitening.dim() == 3
    )
    signatures_hat = F.normalize(_at_least_float32(whiten(signatures, whitening)), dim=-1, eps=eps)  # [C, d]

    if not per_class:
        centred = x - background_mean if background_mean is not None else x
        x_hat = F.normalize(_at_least_float32(whiten(centred, whitening)), dim=-1, eps=eps)  # [B, d]
        return F.linear(x_hat, signatures_hat.to(x_hat.dtype))

    # Per-class background: x̂_bc = W_c x_b − W_c μ_c, formed as one GEMM over the stacked W_c.
    if whitening is None:
        x_white = x[:, None, :]  # [B, 1, d]
    elif whitening.dim() == 2:
        x_white = F.linear(x, whitening)[:, None, :]
    else:
        x_white = (whitening.reshape(num_classes * dim, dim) @ x.T).reshape(num_classes, dim, -1).permute(2, 0, 1)
    if background_mean is not None:
        x_white = x_white - whiten(background_mean, whitening)
    x_hat = F.normalize(_at_least_float32(x_white), dim=-1, eps=eps)  # [B, C, d]
    return (x_hat * signatures_hat.to(x_hat.dtype)).sum(-1)
