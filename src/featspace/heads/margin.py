"""Cosine-margin softmax heads: normface, cosface, arcface, sphereface, lsoftmax, combined_margin.

All but ``lsoftmax`` share one form. With x̂ = x/‖x‖, ŵ_j = w_j/‖w_j‖ and cos θ_j = x̂·ŵ_j, the prediction
scores are s·cos θ_j, and the loss is the cross-entropy of the same scores with the target one replaced
by s·φ(θ_y), φ the method's margin function:

    L_i = −log( e^{s·φ(θ_{y_i})} / (e^{s·φ(θ_{y_i})} + Σ_{j≠y_i} e^{s·cos θ_j}) ),   loss = mean_i L_i.

The margin lives in the loss only; ``logits`` and ``predict`` are the plain s·cos θ_j (argmax = nearest
class direction). Shapes: embeddings [B, d], ``weight`` [C, d], logits [B, C]. No bias (the methods
have none). Only the B target entries go through φ, gathered and scattered back with index ops.

Defaults, one policy: the three heads the LACE paper compares against (000, Tables 1-3) take the
settings of the LACE authors' code (``shared/papers/README.md``: arcface s=30, m=0.05; cosface s=30,
m=0.4; sphereface s=64, m=1.35), so that featspace's comparison reproduces LACE's; heads LACE does not
use take their own paper's or authors' code defaults, stated in each docstring. Margins are in radians
for additive angular margins, in cosine units for additive cosine margins, and a plain factor for
multiplicative ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featspace.functional.angular import (
    MAX_MULTIPLICATIVE_MARGIN,
    additive_angular_margin,
    combined_margin,
    cosine_logits,
    multiplicative_angular_margin,
)
from featspace.functional.rows import NORM_EPS
from featspace.heads import hparams
from featspace.heads.base import Head, HeadOutput, register_head, upcast_half
from featspace.heads.softmax import LinearClassifier

__all__ = [
    "ArcFaceHead",
    "CombinedMarginHead",
    "CosFaceHead",
    "CosineMarginHead",
    "LSoftmaxHead",
    "NormFaceHead",
    "SphereFaceHead",
]


class CosineMarginHead(Head):
    """Shared part of the cosine-margin heads: ``weight`` [C, d], scores s·cos θ_j, CE with s·φ(θ_y) as target.

    Subclasses define :meth:`target_cosine` (φ, in cosine units). The weight is initialised as
    ``nn.Linear``'s (uniform ±1/√d); only its direction matters.
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float | None,
                 *, scale_none_means_feature_norm: bool = False) -> None:
        super().__init__(embedding_dim, num_classes)
        if scale is None and scale_none_means_feature_norm:
            self.scale = None
        else:
            self.scale = hparams.scale("scale", scale)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        bound = 1.0 / math.sqrt(embedding_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        """φ(θ_y) in cosine units for the target cosines [B, 1]; the identity means no margin."""
        return cos_target

    def radius(self, embeddings: Tensor) -> Tensor | float:
        """The factor the cosines are multiplied by: the scale s, or ‖x_i‖ [B, 1] (SphereFace's ``scale=None``)."""
        if self.scale is None:
            return torch.linalg.vector_norm(upcast_half(embeddings), dim=1, keepdim=True)
        return self.scale

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        cos = upcast_half(cosine_logits(embeddings, self.weight))
        radius = self.radius(embeddings)
        logits = radius * cos
        target = labels.long()[:, None]
        margin_target = radius * self.target_cosine(cos.gather(1, target))
        ce = F.cross_entropy(logits.scatter(1, target, margin_target), labels.long())
        return HeadOutput(ce, logits, {"ce": ce})

    def scores(self, embeddings: Tensor) -> Tensor:
        return self.radius(embeddings) * upcast_half(cosine_logits(embeddings, self.weight))


@register_head("normface")
class NormFaceHead(CosineMarginHead):
    """NormFace normalised softmax: cross-entropy on s·cos(x, w_j), no margin (Wang et al., 2017).

    L_i = −log( e^{s·cos θ_{y_i}} / Σ_j e^{s·cos θ_j} ).

    scale s = 30: featspace's choice, the scale of the LACE code's cosine baselines, so that normface is
    exactly cosface and arcface at margin 0 with their defaults. NormFace also proposes learning s; here
    it is a fixed hyperparameter.
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 30.0) -> None:
        super().__init__(embedding_dim, num_classes, scale)


@register_head("cosface")
class CosFaceHead(CosineMarginHead):
    """CosFace / AM-softmax / LMCL: additive cosine margin, target logit s·(cos θ_y − m).

    L_i = −log( e^{s(cos θ_{y_i} − m)} / (e^{s(cos θ_{y_i} − m)} + Σ_{j≠y_i} e^{s·cos θ_j}) )
    (Wang et al., CVPR 2018, the large margin cosine loss; identical to AM-softmax, Wang et al. 2018).

    Defaults s = 30, m = 0.4 (cosine units): the LACE authors' code. The CosFace paper uses s = 64, m = 0.35.
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.4) -> None:
        super().__init__(embedding_dim, num_classes, scale)
        self.margin = hparams.real("margin", margin, low=0.0)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        return cos_target - self.margin


@register_head("arcface")
class ArcFaceHead(CosineMarginHead):
    """ArcFace: additive angular margin, target logit s·cos(θ_y + m) (Deng et al., CVPR 2019).

    L_i = −log( e^{s·φ(θ_{y_i})} / (e^{s·φ(θ_{y_i})} + Σ_{j≠y_i} e^{s·cos θ_j}) ) with
    φ(θ) = cos(θ + m) for θ ≤ π − m and φ(θ) = cos θ − m·sin m beyond, the threshold rule of the ArcFace
    authors' code that keeps φ non-increasing (``featspace.functional.additive_angular_margin``).

    margin m ∈ [0, π/2] rad. Defaults s = 30, m = 0.05: the LACE authors' code. The ArcFace paper uses
    s = 64, m = 0.5.
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.05) -> None:
        super().__init__(embedding_dim, num_classes, scale)
        # up to π/2 the threshold rule keeps φ non-increasing; beyond ≈ 2.33 rad its step would go upwards
        self.margin = hparams.real("margin", margin, low=0.0, high=math.pi / 2)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        return additive_angular_margin(cos_target, self.margin)


@register_head("combined_margin")
class CombinedMarginHead(CosineMarginHead):
    """InsightFace combined margin: target logit s·(cos(m1·θ_y + m2) − m3), hparams margin1/2/3.

    L_i = −log( e^{s·φ(θ_{y_i})} / (e^{s·φ(θ_{y_i})} + Σ_{j≠y_i} e^{s·cos θ_j}) ), φ(θ) = cos(m1·θ + m2) − m3.
    margin1 (m1, multiplicative, SphereFace-like), margin2 (m2, radians, ArcFace-like) and margin3 (m3,
    cosine units, CosFace-like) keep the names featspace gives margins; (1, 0, 0) is NormFace. As in
    the InsightFace code, no threshold rule: φ stops decreasing where m1·θ + m2 > π.

    Defaults s = 64, (m1, m2, m3) = (1.0, 0.3, 0.2): the combined setting of the InsightFace authors'
    code (ArcFace paper, Deng et al. 2019).
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 64.0, margin1: float = 1.0,
                 margin2: float = 0.3, margin3: float = 0.2) -> None:
        super().__init__(embedding_dim, num_classes, scale)
        self.margin1 = hparams.real("margin1", margin1, low=0.0, low_open=True)
        self.margin2 = hparams.real("margin2", margin2, low=0.0, high=math.pi, high_open=True)
        self.margin3 = hparams.real("margin3", margin3, low=0.0)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        return combined_margin(cos_target, self.margin1, self.margin2, self.margin3)


#: λ of the λ·cos + ψ mix is a ratio, safe at any size except where λ·cos itself overflows float32; the bound
#: leaves room for the λ → ∞ limit (plain cosine) that the annealing schedules of the papers start from
_MAX_MIX = 1e30


@register_head("sphereface")
class SphereFaceHead(CosineMarginHead):
    """SphereFace / A-Softmax: multiplicative angular margin, target logit s·ψ(θ_y), real m ≥ 1 allowed.

    L_i = −log( e^{r·f_i} / (e^{r·f_i} + Σ_{j≠y_i} e^{r·cos θ_j}) ),  f_i = (λ·cos θ_{y_i} + ψ(θ_{y_i}))/(1 + λ),
    ψ(θ) = (−1)^k·cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m] (``featspace.functional.multiplicative_angular_margin``),
    weights normalised (‖w_j‖ = 1, no bias) as in SphereFace (Liu et al., CVPR 2017), and r the scale s.

    Departures and choices:
    - Features are normalised and r = s by default, the form the LACE authors' code trains with (s = 64,
      m = 1.35). ``scale=None`` gives SphereFace's own r = ‖x_i‖ (unnormalised features).
    - m may be any real ≥ 1 (LACE's 1.35; SphereFace uses integers, 4 in its experiments). ψ keeps the
      target logit decreasing over all of [0, π]; the plain s·cos(mθ) form would not beyond θ = π/m.
    - λ (``softmax_weight``) is SphereFace's mix with the plain cosine that its code anneals from 1000 down
      to 5 during training to help convergence; featspace keeps it constant (0 by default: pure ψ, as LACE).
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float | None = 64.0, margin: float = 1.35,
                 softmax_weight: float = 0.0) -> None:
        super().__init__(embedding_dim, num_classes, scale, scale_none_means_feature_norm=True)
        self.margin = hparams.real("margin", margin, low=1.0, high=MAX_MULTIPLICATIVE_MARGIN)
        self.softmax_weight = hparams.real("softmax_weight", softmax_weight, low=0.0, high=_MAX_MIX)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        psi = multiplicative_angular_margin(cos_target, self.margin)
        if self.softmax_weight == 0.0:
            return psi
        return (self.softmax_weight * cos_target + psi) / (1.0 + self.softmax_weight)


@register_head("lsoftmax")
class LSoftmaxHead(LinearClassifier):
    """Large-margin softmax (L-Softmax): target logit ‖w_y‖‖x‖ψ(θ_y), integer m, nothing normalised.

    L_i = −log( e^{f_i} / (e^{f_i} + Σ_{j≠y_i} e^{‖w_j‖‖x_i‖cos θ_j}) ),
    f_i = (λ·‖w_{y_i}‖‖x_i‖cos θ_{y_i} + ‖w_{y_i}‖‖x_i‖ψ(θ_{y_i}))/(1 + λ),
    ψ(θ) = (−1)^k·cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m] (Liu et al., ICML 2016). Prediction scores are
    the plain linear logits W·x (no bias, as in the paper), so ``weight`` is [C, d] like ``nn.Linear``'s.
    cos(mθ) is evaluated as a polynomial in cos θ (Chebyshev's T_m), as the authors' code expands it.

    Defaults: m = 4, the largest margin of the paper's experiments (m ∈ {2, 3, 4}). λ (``softmax_weight``)
    is the paper's mix with the plain softmax, which its code anneals from a large value towards 0 to help
    convergence; featspace keeps it constant, 0 by default (pure L-Softmax).
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: int = 4, softmax_weight: float = 0.0) -> None:
        super().__init__(embedding_dim, num_classes, bias=False)
        self.margin = hparams.integer("margin", margin, low=1, high=MAX_MULTIPLICATIVE_MARGIN, hint="L-Softmax's m")
        self.softmax_weight = hparams.real("softmax_weight", softmax_weight, low=0.0, high=_MAX_MIX)

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = upcast_half(self.scores(embeddings))
        target = labels.long()[:, None]
        target_logit = logits.gather(1, target)
        # ‖w_y‖‖x‖: the logit's length; the target cosine is the logit divided by it
        length = (torch.linalg.vector_norm(upcast_half(embeddings), dim=1, keepdim=True)
                  * torch.linalg.vector_norm(upcast_half(self.weight), dim=1).index_select(0, target[:, 0])[:, None])
        cos_target = (target_logit / length.clamp_min(NORM_EPS)).clamp(-1.0, 1.0)
        psi_logit = length * multiplicative_angular_margin(cos_target, self.margin)
        margin_target = (self.softmax_weight * target_logit + psi_logit) / (1.0 + self.softmax_weight)
        ce = F.cross_entropy(logits.scatter(1, target, margin_target), labels.long())
        return HeadOutput(ce, logits, {"ce": ce})
