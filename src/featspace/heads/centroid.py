"""Heads with learned class centroids: intra-class variance (001 eq. 5) and center loss (001 eq. 7-8, Wen et al.).

Both add to a linear softmax classifier (``weight`` [C, d], ``bias`` [C]) a pull of every embedding towards
the centroid of its class, ``centroids`` [C, d]. They differ in how the centroids learn:

- ``icv`` (001_d60953f2522e3b0f.txt, Section 2.3): the centroids are an ``nn.Parameter`` trained by the
  optimizer through the gradient of the loss, which is what the paper's Hadamard layer achieves;
- ``center`` (Wen et al., ECCV 2016, and 001 eq. 7-8): the centroids are a buffer moved outside the gradient
  by a running-average rule after every training step.

The centroid update rules are pure functions (``center_update_wen``, ``center_update_batch_mean``,
``center_update_per_sample``): (centroids [C, d], x [B, d], y [B], alpha) -> new centroids [C, d].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featspace.functional.rows import class_means, class_sums
from featspace.heads import hparams
from featspace.heads.base import HeadOutput, register_head, upcast_half
from featspace.heads.softmax import LinearClassifier

__all__ = [
    "CenterHead",
    "IcvHead",
    "center_update_batch_mean",
    "center_update_per_sample",
    "center_update_wen",
]

_UPDATES = ("wen", "batch_mean", "per_sample")


# ------------------------------------------------------------------------------ centroid update rules
def center_update_wen(centroids: Tensor, embeddings: Tensor, labels: Tensor, alpha: float) -> Tensor:
    """Wen et al. 2016, eq. 4 and Algorithm 1: c_j ← c_j − α·Δc_j with
    Δc_j = Σ_i δ(y_i = j)(c_j − x_i) / (1 + Σ_i δ(y_i = j)).

    centroids [C, d], embeddings [B, d], labels [B] -> new centroids [C, d]. Classes absent from the batch
    have Δc_j = 0. The "+1" damps classes with few samples in the batch (one sample moves its centroid by α/2).
    """
    sums, counts = class_sums(embeddings.to(centroids.dtype), labels, centroids.shape[0])
    step = (counts[:, None] * centroids - sums) / (1.0 + counts[:, None])
    return centroids - alpha * step


def center_update_batch_mean(centroids: Tensor, embeddings: Tensor, labels: Tensor, alpha: float) -> Tensor:
    """001 eq. 7: C_k ← (1 − α)·C_k + α·mean{x_j : y_j = k} for every class k present in the batch (n_k ≠ 0).

    centroids [C, d], embeddings [B, d], labels [B] -> new centroids [C, d].
    """
    means, counts = class_means(embeddings.to(centroids.dtype), labels, centroids.shape[0])
    present = counts > 0
    return torch.where(present[:, None], (1.0 - alpha) * centroids + alpha * means, centroids)


def center_update_per_sample(centroids: Tensor, embeddings: Tensor, labels: Tensor, alpha: float) -> Tensor:
    """001 eq. 8, applied sample by sample in batch order: C_{y_j} ← (1 − α)·C_{y_j} + α·x_j.

    centroids [C, d], embeddings [B, d], labels [B] -> new centroids [C, d].
    Computed in closed form: a class whose n samples come in the order x_(1), …, x_(n) ends at
    (1 − α)^n·C + Σ_m α(1 − α)^{n−m}·x_(m), so later samples weigh more, exactly as the sequential loop.
    """
    y = labels.long()
    num_classes = centroids.shape[0]
    # integer counts for the ranks below, and sums weighted by rank: not functional.class_sums' plain sums
    counts = torch.bincount(y, minlength=num_classes)
    order = torch.argsort(y, stable=True)
    first_of_class = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(y.shape[0], device=y.device) - first_of_class[y[order]]  # 0-based position
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    keep = 1.0 - alpha
    exponents = (counts[y] - 1 - rank).to(centroids.dtype)
    weights = alpha * torch.pow(torch.as_tensor(keep, dtype=centroids.dtype, device=centroids.device), exponents)
    pulled = torch.zeros_like(centroids).index_add_(0, y, weights[:, None] * embeddings.to(centroids.dtype))
    decay = torch.pow(torch.as_tensor(keep, dtype=centroids.dtype, device=centroids.device),
                      counts.to(centroids.dtype))
    return decay[:, None] * centroids + pulled


_UPDATE_RULES = {
    "wen": center_update_wen,
    "batch_mean": center_update_batch_mean,
    "per_sample": center_update_per_sample,
}


# ----------------------------------------------------------------------------------------------- heads
@register_head("icv")
class IcvHead(LinearClassifier):
    """Softmax + intra-class variance λ·mean‖x_i − C_{y_i}‖² with centroids learned by the optimizer (001 eq. 5).

    L = −mean_i log softmax(W x_i + b)_{y_i} + λ·(1/N_b) Σ_i ‖x_i − C_{y_i}‖²  (001 eq. 3 and eq. 5; no ½).
    Shapes: x [B, d], weight [C, d], bias [C], centroids [C, d] (an ``nn.Parameter``; the paper writes the
    transposed N×K matrix C = [C_1, …, C_K]).

    The paper's Hadamard layer H(1_{N×K}, C) = 1 ⊙ C = C outputs its own weights, so its only role is to make
    C a trainable tensor that the loss reads: a plain ``nn.Parameter`` is the same computation, and the
    optimizer (Adam in the paper) updates C with ∂L/∂C_k = −(2λ/N_b) Σ_{j: y_j = k} (x_j − C_k).
    The centroids are initialised as the classifier rows are (uniform ±1/√d); the paper does not say.

    ``lam`` λ: 1 by default, the paper also uses 0.5 and 0.05 (Tables 1-2). ``normalize``: the paper's "Norm."
    columns, where the embedding itself is normalised to unit length (Section 3.2-3.3) before everything that
    reads it, so both the classifier and the variance term see x/‖x‖ (the centroids are not normalised, they
    learn the mean of unit vectors). ``feature_space`` returns that normalised embedding, the space the
    centroids live in; ``predict`` is the classifier's scores, ``learned_centroids`` the centroids (``None``
    when λ = 0).
    """

    def __init__(self, embedding_dim: int, num_classes: int, lam: float = 1.0, normalize: bool = False) -> None:
        hparams.weight("lam", lam)
        hparams.boolean("normalize", normalize)
        super().__init__(embedding_dim, num_classes)
        self.lam = lam
        self.normalize = normalize
        bound = 1.0 / math.sqrt(embedding_dim)
        self.centroids = nn.Parameter(torch.empty(num_classes, embedding_dim).uniform_(-bound, bound))

    def feature_space(self, embeddings: Tensor) -> Tensor:
        return F.normalize(embeddings, dim=1, eps=1e-12) if self.normalize else embeddings

    def scores(self, embeddings: Tensor) -> Tensor:
        return super().scores(self.feature_space(embeddings))

    def learned_centroids(self) -> Tensor | None:
        # with λ = 0 (the paper's cross-entropy rows) no loss reads the centroids: they never leave their
        # random initialisation, so they are not offered for nearest-centroid scoring or plots
        return self.centroids.detach() if self.lam > 0 else None

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        y = labels.long()
        features = self.feature_space(embeddings)
        logits = F.linear(features, self.weight, self.bias)
        ce = F.cross_entropy(upcast_half(logits), y)
        variance = (upcast_half(features) - self.centroids[y]).square().sum(1).mean()
        loss = ce + self.lam * variance
        return HeadOutput(loss, logits, {"ce": ce, "variance": variance})


@register_head("center")
class CenterHead(LinearClassifier):
    """Softmax + center loss λ·½·mean‖x_i − c_{y_i}‖², centroids updated outside the gradient (Wen et al. 2016).

    L = −mean_i log softmax(W x_i + b)_{y_i} + λ·½·mean_i ‖x_i − c_{y_i}‖².  Shapes: x [B, d], weight [C, d],
    bias [C], centroids [C, d] (a buffer). Wen et al. write L_S + λ·½Σ_i‖x_i − c_{y_i}‖² with L_S also a sum
    over the batch; dividing both by B keeps their λ meaning the same thing here.

    After each training-mode forward, and after the loss has been computed with the old centroids (Wen's
    Algorithm 1 order), the centroids move by ``update``, at rate ``alpha``:
    ``"wen"`` (Wen et al. eq. 4: c_j −= α·Σ_i δ(y_i=j)(c_j − x_i)/(1 + n_j)), ``"batch_mean"`` (001 eq. 7:
    (1−α)·C_k + α·batch mean of class k), ``"per_sample"`` (001 eq. 8: (1−α)·C_k + α·x_j, one sample at a time).
    The update reads the DDP-gathered batch, so every process applies the same update and the buffers stay
    identical without a broadcast. Evaluation-mode forwards do not update.

    Defaults: α = 0.5 and λ = 0.003 are Wen et al.'s face-recognition setting. The LACE paper's comparison
    weighs 0.9·CE + 0.1·center term, which is λ = 0.1/0.9 ≈ 0.11 here with the loss scaled by 0.9 (its ½
    convention is not stated). Centroids start like Wen et al.'s Caffe layer (``xavier`` filler: uniform
    ±√(3/d)); classes never seen in training keep their random start.
    """

    uses_batch_statistics = True

    def __init__(self, embedding_dim: int, num_classes: int, lam: float = 0.003, alpha: float = 0.5,
                 update: str = "wen") -> None:
        hparams.weight("lam", lam)
        hparams.real("alpha", alpha, low=0.0, high=1.0, hint="a rate of a running average")
        hparams.choice("update", update, _UPDATES)
        super().__init__(embedding_dim, num_classes)
        self.lam = lam
        self.alpha = alpha
        self.update = update
        bound = math.sqrt(3.0 / embedding_dim)
        self.register_buffer("centroids", torch.empty(num_classes, embedding_dim).uniform_(-bound, bound))

    def learned_centroids(self) -> Tensor:
        return self.centroids

    # Under torch.compile the update runs eagerly, outside the graph (torch.compiler.disable), and the buffer is
    # replaced by the new tensor instead of overwritten in place. Both keep training exact:
    # - eager kernels give bit for bit the centroids of an eager run, where a compiled (fused) update could
    #   round differently and drift over an epoch of updates;
    # - the compiled loss graph may keep the centroids it read for its backward: an in-place write into them
    #   after the forward either stops backward ("modified by an inplace operation") or, when the write is
    #   inside the graph, silently gives the embeddings the gradient of the *new* centroids. A new tensor
    #   leaves the one the loss read untouched. The buffer stays registered (state_dict, .to(), DDP, which
    #   re-reads a module's buffers before each broadcast), and the values are those of the old copy_.
    @torch.compiler.disable
    def update_centroids(self, embeddings: Tensor, labels: Tensor) -> None:
        """Apply the ``update`` rule to the buffer with a (global) batch; no gradient."""
        with torch.no_grad():
            self.centroids = _UPDATE_RULES[self.update](self.centroids, embeddings.detach(), labels, self.alpha)

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        y = labels.long()
        logits = self.scores(embeddings)
        # per-sample terms through sample_mean: exact under DDP with uneven shards (see Head.sample_mean)
        ce = self.sample_mean(F.cross_entropy(upcast_half(logits), y, reduction="none"))
        center = 0.5 * self.sample_mean((upcast_half(embeddings) - self.centroids[y]).square().sum(1))
        loss = ce + self.lam * center
        if self.training:
            with torch.no_grad():
                x_all, y_all = self.gather_batch(embeddings.detach(), y)
            self.update_centroids(x_all, y_all)
        return HeadOutput(loss, logits, {"ce": ce, "center": center})
