"""HASeparator (004_442ee0fd9060adbb.txt, eq. 4-8): cosine softmax plus a hyperplane-margin penalty."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featspace.functional.angular import (
    cosine_logits,
    cosines_and_target_weight_cosines,
    hyperplane_hinge_sums,
    target_weight_cosines,
)
from featspace.functional.rows import normalize_rows
from featspace.heads import hparams
from featspace.heads.base import Head, HeadOutput, register_head, upcast_half

__all__ = ["HASeparatorHead"]


@register_head("hasep")
class HASeparatorHead(Head):
    """HASeparator: softmax on σ·cos(x, w_j) plus a hinge pushing x̂ away from its class's separating hyperplanes.

    004, Section III-C. With x̂_i = x_i/‖x_i‖ and ŵ_j = w_j/‖w_j‖ (``weight`` [C, d], no bias):

    - logits (eq. 4): O_ij = σ·x̂_i·ŵ_j, [B, C]; these are also the prediction scores.
    - projections (eq. 5-6): P_ij = x̂_i·ĥ_ij, ĥ_ij = (ŵ_{y_i} − ŵ_j)/‖ŵ_{y_i} − ŵ_j‖, the unit normal of the
      hyperplane separating class y_i from class j, pointing to y_i's side.
    - hinge (eq. 7): J(p) = m − min(p, m) = max(0, m − p).
    - loss (eq. 8 and below it): C_all = C_c + C_t, C_c the cross-entropy of O, C_t = (1/B)·Σ_i Σ_{j≠y_i} J(P_ij),
      with no weighting between the two terms (the paper adds them). ``parts``: ``ce`` and ``penalty``.

    Departures (the first two follow ``shared/papers/README.md``):
    - the normal is ŵ_y − ŵ_j as in Section III-A and the authors' code, not ŵ_j − ŵ_y as eq. (5) prints;
    - the sum skips j = y_i, which has no hyperplane: the authors' code keeps it, and its zero normal
      adds the constant m (no gradient) per sample. ``include_target_term=True`` restores that constant,
      so that loss values match the authors' logs; it changes no gradient.
    - P is computed without the B×d×C tensor H of eq. (5): by linearity
      P_ij = (cos θ_{i,y_i} − cos θ_ij)/‖ŵ_{y_i} − ŵ_j‖ and ‖ŵ_{y_i} − ŵ_j‖² = 2 − 2·ŵ_{y_i}·ŵ_j, so a
      product of unit weights (ŴŴᵀ [C, C] or Ŵ_y·Ŵᵀ [B, C], whichever is cheaper) replaces the B×d×C
      one: memory O(B·C + C·d) (``featspace.functional.hyperplane_projections``). For speed the step goes
      through ``cosines_and_target_weight_cosines`` (both products as one, when C > B) and
      ``hyperplane_hinge_sums`` (the hinge with its backward written out); tests hold both to the
      autograd forms and the head to a literal float64 transcription with the B×d×C normals. A class j whose weight
      direction coincides with ŵ_{y_i} has no hyperplane either and gets P_ij = 0, as the authors'
      L2-normalised zero normal gives.

    Defaults from the authors' code: margin m = 0.1 (the paper requires m ∈ (0, 1]), scale σ = 1.
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.1, scale: float = 1.0,
                 include_target_term: bool = False) -> None:
        super().__init__(embedding_dim, num_classes)
        self.margin = hparams.real("margin", margin, low=0.0, high=1.0, low_open=True)
        self.scale = hparams.scale("scale", scale)
        self.include_target_term = hparams.boolean("include_target_term", include_target_term)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        bound = 1.0 / math.sqrt(embedding_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        labels = labels.long()
        unit_weight = normalize_rows(self.weight)
        unit_x = normalize_rows(embeddings)
        if self.num_classes > labels.shape[0] and not torch.is_autocast_enabled(embeddings.device.type):
            cos, target_weight_cos = cosines_and_target_weight_cosines(unit_x, unit_weight, labels)
        else:  # the Gram rows ŴŴᵀ are the cheaper product (and autocast picks the products' precision)
            cos = F.linear(unit_x, unit_weight)
            target_weight_cos = target_weight_cosines(unit_weight, labels)
        cos, target_weight_cos = upcast_half(cos), upcast_half(target_weight_cos)
        hinge_sums = hyperplane_hinge_sums(cos, target_weight_cos, labels, self.margin)  # [B]
        # the j = y column holds P = 0, hence J = m exactly and no gradient: dropping it is subtracting m
        penalty = hinge_sums.mean() - (0.0 if self.include_target_term else self.margin)
        logits = self.scale * cos
        ce = F.cross_entropy(logits, labels)
        return HeadOutput(ce + penalty, logits, {"ce": ce, "penalty": penalty})

    def scores(self, embeddings: Tensor) -> Tensor:
        return self.scale * upcast_half(cosine_logits(embeddings, self.weight))
