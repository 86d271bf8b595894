"""Metric-learning losses on a batch: NCA (003 eq. 4) and prototypical (003 eq. 3), both leave-one-out.

Both losses of the direct-sum paper (003_3b01b74d9ee629e7.txt, Sec. 2.2) compare every sample of a batch
with the others by squared Euclidean distance, without a classifier. They need no scale or temperature
(the paper uses none). Samples that have no other sample of their own class in the batch have no
leave-one-out positive: their term is undefined in the text, and featspace leaves them out of the mean
over samples. A batch where no sample has a positive (all labels distinct, a batch of one) gives 0,
still connected to ``x`` so that ``backward`` runs and yields zero gradients — never NaN.

The functions work in the dtype they are given; callers running under autocast should pass float32 or
wider and switch autocast off around them (the heads in ``featspace.heads.directsum`` do), because the
Gram matrix behind the distances loses most of its digits in bfloat16.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from featspace.functional.capture import capturing_graph
from featspace.functional.rows import class_sums, squared_distances

__all__ = ["nca_loss", "proto_loss"]


def _check_batch(x: Tensor, y: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must have shape [n, d], got {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape [{x.shape[0]}] to match x, got {tuple(y.shape)}")


def nca_loss(x: Tensor, y: Tensor) -> Tensor:
    """Neighbourhood component analysis loss, leave-one-out (003 eq. 4).

        ℓ = −E_i log( Σ_{j≠i, y_j=y_i} exp(−‖x_i − x_j‖²) / Σ_{j≠i} exp(−‖x_i − x_j‖²) )

    x: [n, d] embeddings, y: [n] integer labels (any values). Returns a scalar. E_i runs over the samples
    that have at least one other sample of their class; see the module docstring. Computed by :class:`_NCA`
    (one exponential pass over the n×n distances and a written-out backward); first derivatives only.
    """
    _check_batch(x, y)
    return _NCA.apply(x, y)


class _NCA(torch.autograd.Function):
    """nca_loss with one exponential over the n×n matrix and the backward written out.

    With v_ij = −‖x_i − x_j‖² (v_ii left out), P_i the positives (j ≠ i, y_j = y_i) and N_i the others,
    each set is exponentiated against its own row maximum, m_i^P = max_{P_i} v_ij and m_i^N = max_{j≠i} v_ij
    (the maximum over all others, ≥ every negative):

        S_i^P = Σ_{P_i} exp(v_ij − m_i^P) ≥ 1,   S_i^N = Σ_{N_i} exp(v_ij − m_i^N),
        ℓ_i = log Σ_{j≠i} e^{v_ij} − log Σ_{P_i} e^{v_ij} = log(1 + t_i),   t_i = (S_i^N / S_i^P) e^{m_i^N − m_i^P},

    the same quantity as the two log-sum-exps of eq. 4, without their overflow: every exponent is ≤ 0 and
    S^P ≥ 1, so no row underflows as a whole however far its positives lie. ∂ℓ_i/∂v_ij is
    p_ij − [j ∈ P_i] p_ij^P (softmax over all others minus softmax over the positives), which on the same
    terms is σ(z_i) exp(v_ij − m_i^N)/S_i^N for a negative and −σ(z_i) exp(v_ij − m_i^P)/S_i^P for a
    positive, z_i = log t_i. With G = ∂L/∂v and S = G + Gᵀ, ∂L/∂x = 2 (S x − diag(S 1) x): one matmul.

    Exponents below log(finfo.tiny) + 1 are set to contribute 0 instead of being evaluated: their terms are
    below 3·finfo.tiny (1e-37 in float32), next to a sum ≥ 1 (so the loss is the same to the last bit, and the
    gradient to ~1e-37 absolute), and the CPU's exponential is 15-40× slower on arguments whose result
    underflows (most of the matrix at initialisation, where the squared distances between random 512-d
    embeddings are ~10³ apart); the softmax kernels have no such slow path.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        if x.shape[0] == 0:
            ctx.empty = True
            return x.new_zeros(())
        ctx.empty = False
        finfo = torch.finfo(x.dtype)
        neg_dist = squared_distances(x, x).neg_()
        neg_dist.fill_diagonal_(float("-inf"))  # j ≠ i
        same = y[:, None] == y[None, :]  # positives, and the diagonal (whose exponential is 0)
        top_all = neg_dist.amax(1)
        top_all = torch.where(top_all > float("-inf"), top_all, torch.zeros_like(top_all))  # a batch of one
        top_pos = neg_dist.masked_fill(~same, float("-inf")).amax(1)
        valid = top_pos > float("-inf")  # has a positive
        top_pos = torch.where(valid, top_pos, top_all)  # rows without a positive: any finite shift
        exponent = neg_dist.sub_(torch.where(same, top_pos[:, None], top_all[:, None]))  # ≤ 0, −inf on the diagonal
        floor = math.log(finfo.tiny) + 1.0  # e^floor ≈ 2.7·tiny: exactly at log(tiny) the result rounds subnormal
        kept = exponent >= floor
        e = exponent.clamp_min_(floor).exp_().mul_(kept)
        e_pos = e * same
        sum_pos = e_pos.sum(1).clamp_min_(finfo.tiny)
        sum_neg = (e - e_pos).sum(1)
        z = sum_neg.log() - sum_pos.log() + (top_all - top_pos)  # −inf where a row has no negative
        per_sample = torch.logaddexp(torch.zeros_like(z), z)  # log(1 + t), exact also for large t
        count = valid.sum().clamp_min(1).to(x.dtype)
        loss = torch.where(valid, per_sample, torch.zeros_like(per_sample)).sum() / count
        weight = torch.sigmoid(z).mul_(valid) / count  # ∂ℓ_i/∂z_i per sample of the mean
        ctx.save_for_backward(x, e, same, weight / sum_pos, weight / sum_neg.clamp_min(finfo.tiny))
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        if ctx.empty:
            return None, None
        x, e, same, coef_pos, coef_neg = ctx.saved_tensors
        g = (e * torch.where(same, -coef_pos[:, None], coef_neg[:, None])).mul_(grad)  # ∂L/∂v_ij
        s = g + g.T
        grad_x = torch.addmm(x * s.sum(1, keepdim=True), s, x, alpha=2.0, beta=-2.0)
        return grad_x, None


def proto_loss(x: Tensor, y: Tensor, num_classes: int | None = None) -> Tensor:
    """Prototypical loss with leave-one-out prototypes (003 eq. 3).

        ℓ = −E_i log( exp(−‖x_i − μ_{y_i, i}‖²) / Σ_c exp(−‖x_i − μ_{c, i}‖²) ),   μ_{c, i} = mean_{j≠i, y_j=c} x_j

    For c ≠ y_i the prototype is the plain class mean; for c = y_i it leaves x_i out. The sum over c runs
    over the classes present in the batch (a class with no sample has no prototype).

    x: [n, d], y: [n] integer labels. Returns a scalar; E_i as in the module docstring.
    ``num_classes``: labels lie in [0, num_classes). On an accelerator this avoids a host-device sync
    (prototypes are kept for all C classes, absent ones masked out); on the CPU, or with ``None`` (any
    label values), the labels are compacted to the classes present (``torch.unique``), so the cost is
    O(n·K·d) with K ≤ n the number of classes in the batch, not O(n·C·d).
    """
    _check_batch(x, y)
    # the compaction's shape depends on the label values: inside a graph capture keep all C prototypes
    if num_classes is None or (x.device.type == "cpu" and not capturing_graph()):
        _, y = torch.unique(y, return_inverse=True)
        num_classes = int(y.max()) + 1 if y.numel() else 1
    return _proto_loss_over_classes(x, y, num_classes)


def _proto_loss_over_classes(x: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """proto_loss with prototypes for every label in [0, num_classes), absent ones masked; no host sync."""
    return _Proto.apply(x, y.long(), num_classes)


class _Proto(torch.autograd.Function):
    """The prototypical loss over K label slots with its backward written out.

    Forward: prototypes μ_c = S_c / n_c from the class sums, the own leave-one-out residual r_i = x_i − μ_{y_i,i}
    with μ_{y_i,i} = (S_{y_i} − x_i)/(n_{y_i} − 1), and ℓ_i = −log_softmax(v_i)_{y_i} with v_ic = −‖x_i − μ_c‖²
    (c ≠ y_i), v_{i,y_i} = −‖r_i‖², absent classes −∞ (the log-softmax kernel: no slow exponential on the CPU).
    Backward, with P = softmax(v), w_i = [valid_i] / n_valid, Q_ic = w_i P_ic off the own class and
    a_i = w_i (1 − P_{i,y_i}) (= ∂L/∂‖r_i‖²):

        ∂L/∂x_i = 2 (Q μ)_i − 2 (Q 1)_i x_i + g_{y_i} / n_{y_i} + 2 a_i r_i + 2 (a_i r_i − T_{y_i}) / (n_{y_i} − 1),

    g_c = 2 (Qᵀx)_c − 2 (1ᵀQ)_c μ_c the gradient into μ_c, T_c = Σ_{j: y_j = c} a_j r_j (x_i is not in its own
    leave-one-out mean, but in every other sample's of its class). Two [n, K]×[K, d]-sized products, as autograd's.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, num_classes: int) -> Tensor:  # type: ignore[override]
        sums, counts = class_sums(x, y, num_classes)  # [K, d], [K]
        counts = counts.to(x.dtype)
        means = sums / counts.clamp_min(1.0)[:, None]
        own_count = counts.index_select(0, y)  # [n]
        valid = own_count >= 2
        residual = torch.addcdiv(x, x - sums.index_select(0, y), (own_count - 1.0).clamp_min(1.0)[:, None])
        own_dist = residual.pow(2).sum(1)
        neg_dist = squared_distances(x, means).neg_().scatter_(1, y[:, None], -own_dist[:, None])
        neg_dist = neg_dist.masked_fill_((counts == 0)[None, :], float("-inf"))
        neg_dist = torch.where(valid[:, None], neg_dist, torch.zeros_like(neg_dist))
        per_sample = -torch.log_softmax(neg_dist, 1).gather(1, y[:, None])[:, 0]
        weight = valid.to(x.dtype) / valid.sum().clamp_min(1).to(x.dtype)
        # P from the softmax kernel, not exp(log P): torch.exp is slow where results underflow
        ctx.save_for_backward(x, y, means, counts, own_count, residual, torch.softmax(neg_dist, 1), weight)
        return (per_sample * weight).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, y, means, counts, own_count, residual, p, weight = ctx.saved_tensors
        w = weight * grad
        q = p * w[:, None]  # w_i P_ic
        own_q = q.gather(1, y[:, None])  # w_i P_{i,y_i}
        q.scatter_(1, y[:, None], 0.0)
        own_coef = w[:, None] - own_q  # a_i
        weighted_residual = own_coef * residual  # a_i r_i
        totals = torch.zeros_like(means).index_add_(0, y, weighted_residual)  # T_c
        leave_out = totals.mul_(2.0 / (counts - 1.0).clamp_min(1.0)[:, None])  # 2 T_c / (n_c − 1)
        inv_counts = counts.clamp_min(1.0).reciprocal()
        if 2 * q.shape[1] <= q.shape[0]:  # few classes: the two [n, K]×[K, d] products
            into_means = torch.addmm(means * q.sum(0)[:, None], q.T, x, beta=-2.0, alpha=2.0)  # g_c
            per_class = into_means.mul_(inv_counts[:, None]).sub_(leave_out)  # g_c / n_c − 2 T_c / (n_c − 1)
            grad_x = torch.addmm(x * q.sum(1, keepdim=True), q, means, beta=-2.0, alpha=2.0)
        else:
            # many classes: μ_c = Σ_{j: y_j = c} x_j / n_c turns both into one [n, n]×[n, d] product, with
            # H_ij = Q_{i,y_j} / n_{y_j}: (Q μ)_i = (H x)_i and (Qᵀx)_{y_k} / n_{y_k} = (Hᵀx)_k
            h = (q * inv_counts[None, :]).index_select(1, y)
            per_class = (means * (q.sum(0) * inv_counts)[:, None]).mul_(-2.0).sub_(leave_out)
            grad_x = torch.addmm(x * q.sum(1, keepdim=True), h + h.T, x, beta=-2.0, alpha=2.0)
        grad_x += per_class.index_select(0, y)
        grad_x += weighted_residual.mul_((2.0 * own_count / (own_count - 1.0).clamp_min(1.0))[:, None])  # 2a r n/(n−1)
        return grad_x, None, None
