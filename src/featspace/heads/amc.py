"""Angular margin contrastive loss (AMC) as a head, with the LACE paper's 0.9/0.1 weighting."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from featspace.functional.angular import angles
from featspace.functional.rows import NORM_EPS
from featspace.heads import hparams
from featspace.heads.base import HeadOutput, register_head, upcast_half
from featspace.heads.softmax import LinearClassifier

__all__ = ["AMCHead", "angular_margin_contrastive_loss"]


def angular_margin_contrastive_loss(embeddings: Tensor, labels: Tensor, margin: float, eps: float = NORM_EPS) -> Tensor:
    """AMC-Loss (Choi, Som, Turaga 2020) over all pairs i < j of a batch.

    With x̂ = x/‖x‖ and the geodesic distance θ_ij = arccos(x̂_iᵀ x̂_j) on the unit sphere,

        ℓ_ij = θ_ij²                      if y_i = y_j   (neighbours are pulled together)
        ℓ_ij = max(0, m − θ_ij)²          otherwise      (non-neighbours pushed at least m apart)

    and the loss is the mean of ℓ_ij over the N(N−1)/2 pairs. embeddings [N, d], labels [N] -> scalar.
    A batch with no pair (N = 1) gives 0 with a gradient. The cosine is kept ``finfo.eps`` away from ±1
    before arccos (``featspace.functional.angles``): arccos has an infinite slope there, so two identical or
    antipodal embeddings get a flat, finite gradient instead. Norms are floored at ``eps``.
    Memory: the N×N Gram matrix.
    """
    n = embeddings.shape[0]
    if n < 2:
        return embeddings.sum() * 0.0
    unit = F.normalize(embeddings, dim=1, eps=eps)
    first, second = torch.triu_indices(n, n, offset=1, device=embeddings.device)
    theta = angles((unit @ unit.T)[first, second])
    same_class = labels[first] == labels[second]
    per_pair = torch.where(same_class, theta.square(), (margin - theta).clamp_min(0.0).square())
    return per_pair.mean()


@register_head("amc")
class AMCHead(LinearClassifier):
    """Linear softmax + angular margin contrastive loss on embedding pairs (Choi et al. 2020), LACE's 0.9/0.1.

    loss = (1 − lam)·CE(W x + b, y) + lam·AMC(x, y)

    CE is the softmax cross-entropy of the linear classifier (``weight`` [C, d], ``bias`` [C]) on the local
    batch; AMC (:func:`angular_margin_contrastive_loss`) is computed on all pairs i < j of the *global*
    batch (gathered across processes under DDP, ``uses_batch_statistics``). Logits and predictions are the
    classifier's scores; the margin enters the pair loss only.

    Hyperparameters and their sources:
        margin: the angular margin m_g in radians, 0.5 (Choi et al.; also the default of the AMC port in the
            LACE authors' code).
        lam: the weight of AMC, 0.1, with 1 − lam = 0.9 on the softmax loss, as the LACE paper states for its
            AMC baseline (000, Section 4: the two weights "constrained to sum to 1").

    Departures from the LACE authors' code (GatorSense/LACE ``Utils/loss_functions.py``, ``AMCLoss``, a port
    of Choi et al.'s TensorFlow code): it pairs the first half of the batch with the second half element-wise
    and calls a pair neighbours when the *predicted* classes of a separate bias-free classifier agree; here
    every pair i < j of the batch is used and neighbours are defined by the true labels, as the AMC formula
    reads. That port also clamps the cosine to [−1e−7, 1e−7] (not ±(1 − 1e−7)) before arccos, which pins
    every distance at π/2 and leaves the AMC term without gradient; in the version we read, the AMC rows of
    the LACE paper's tables would then measure 0.9·softmax plus a constant, i.e. plain softmax under Adam.
    """

    uses_batch_statistics = True

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.5, lam: float = 0.1) -> None:
        super().__init__(embedding_dim, num_classes)
        self.margin = hparams.real("margin", margin, low=0.0, high=math.pi, owner="amc")
        self.lam = hparams.real("lam", lam, low=0.0, high=1.0, owner="amc")

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.scores(embeddings)
        # per-sample CE through sample_mean: exact under DDP with uneven shards (see Head.sample_mean)
        ce = self.sample_mean(F.cross_entropy(upcast_half(logits), labels.long(), reduction="none"))
        all_embeddings, all_labels = self.gather_batch(embeddings, labels)
        amc = angular_margin_contrastive_loss(upcast_half(all_embeddings), all_labels, self.margin)
        loss = (1.0 - self.lam) * ce + self.lam * amc
        return HeadOutput(loss, logits, {"ce": ce, "amc": amc})
