"""LACE (000_96dfa70546181807.txt, eq. 3-4, Alg. 1): cross-entropy on learned adaptive cosine estimator scores."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featspace.functional.ace import ace_scores, whiten
from featspace.heads import hparams
from featspace.heads.base import Head, HeadOutput, register_head, upcast_half

__all__ = ["LACEHead"]


@register_head("lace")
class LACEHead(Head):
    """LACE: cross-entropy on signed ACE cosines in a learned background-whitened space (000 eq. 3-4).

    scores[b, c] = cos(x̂_b, ŝ_c) / T,   x̂_b = W (x_b − μ_b),   ŝ_c = W s_c,   Σ_b⁻¹ = Wᵀ W
    loss = mean_b −log softmax(scores_b)_{y_b}                                          (eq. 4)

    which is eq. 3's ACE statistic sᵀΣ_b⁻¹(x − μ_b) / (√(sᵀΣ_b⁻¹s)·√((x − μ_b)ᵀΣ_b⁻¹(x − μ_b))) (with the
    square roots as intended, not nested as printed) fed to a softmax, as Alg. 1 trains it.

    Parameters (shapes for d = embedding_dim, C = num_classes):
        signatures      [C, d]  target signatures S (eq. 4's S ∈ R^{d×C}, stored nn.Linear-style)
        background_mean [d]     μ_b; absent (fixed at 0) when ``use_mean=False``
        whitening       [d, d]  W, a factor of the inverse background covariance; absent (W = I) when
                                ``use_covariance=False``
        log_temperature []      log T, only when ``learn_temperature=True``
    With ``per_class_background=True`` they become [C, d] and [C, d, d]: class c is scored as
    cos(W_c (x − μ_c), W_c s_c), the one-vs-all background per class that Section 5 names as future work.
    That costs C·d² whitening parameters and a B×C×d tensor per step (never B×C×d×d); the global form needs
    no B×C×d tensor at all.

    Hyperparameters:
        use_mean, use_covariance: switch μ_b and Σ_b for the Table 4 ablation (both on in the paper; both off
            leaves the L2-normalised, scale-free cosine softmax of Table 4's first row).
        per_class_background: one (μ_c, W_c) per class instead of one global background (default False, as
            in the paper).
        temperature: T dividing the cosines; 1.0 (no scale) as the paper and the authors' code.
        learn_temperature: learn T (as log T, so it stays positive) starting from ``temperature``; off by
            default. Bounded cosines with T = 1 floor the cross-entropy at log(1 + (C−1)·e⁻²) (2.67 for
            C = 100), one plausible reason for the paper's weak CIFAR-100 rows; a learned T removes the floor.

    Departures from the text and the authors' code (GatorSense/LACE, ``Utils/loss_functions.py``):
    - The authors learn a matrix B, form B·Bᵀ and take its SVD at every step to get D^{-1/2}Uᵀ. Here the
      factor W is the parameter, so Σ_b⁻¹ = WᵀW is positive semi-definite by construction and a step costs
      two matrix products: no SVD, eigendecomposition or inverse. The scores depend on W only through WᵀW,
      so the two parameterisations span the same models (W = B⁻¹ reproduces the authors' scores exactly;
      see ``benchmarks/lace_svd_reference.py`` and tests/heads/test_lace.py).
    - Initialisation (the paper only says "random"): W = I and μ_b = 0, so training starts from the plain
      cosine softmax and learns the whitening from there, instead of the authors' random B and uniform μ_b;
      signatures are N(0, 1/d) (the authors draw them uniform in ±1/√d; only their directions matter).
    - Like the authors' code (and unlike eq. 3's symmetric reading), x is centred by μ_b but the signatures
      are not, and the cosine is signed, not squared.

    ``feature_space(x)`` returns x̂ = W (x − μ_b), the whitened space of the paper's Table 2 "LACE" row
    (with a per-class background there is no single whitened space, and it returns x unchanged).
    ``learned_centroids()`` returns the unit-norm whitened signatures ŝ_c / ‖ŝ_c‖ in that space, so that
    nearest-centroid prediction there (raw or L2-normalised) equals the head's own prediction; ``None`` with a
    per-class background.
    """

    #: floor of the norms of x̂ and ŝ (as F.normalize): a sample at the background mean scores 0, finitely
    eps: float = 1e-12

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        use_mean: bool = True,
        use_covariance: bool = True,
        per_class_background: bool = False,
        temperature: float = 1.0,
        learn_temperature: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        for key, value in (("use_mean", use_mean), ("use_covariance", use_covariance),
                           ("per_class_background", per_class_background), ("learn_temperature", learn_temperature)):
            hparams.boolean(key, value, owner="lace")
        hparams.real("temperature", temperature, low=0.0, low_open=True, owner="lace")
        self.use_mean = use_mean
        self.use_covariance = use_covariance
        self.per_class_background = per_class_background
        self.temperature = float(temperature)
        self.learn_temperature = learn_temperature

        d, c = embedding_dim, num_classes
        self.signatures = nn.Parameter(torch.randn(c, d) / math.sqrt(d))
        background_shape = (c, d) if per_class_background else (d,)
        if use_mean:
            self.background_mean = nn.Parameter(torch.zeros(background_shape))
        else:
            self.register_parameter("background_mean", None)
        if use_covariance:
            identity = torch.eye(d)
            self.whitening = nn.Parameter(identity.expand(c, d, d).clone() if per_class_background else identity)
        else:
            self.register_parameter("whitening", None)
        if learn_temperature:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(self.temperature)))
        else:
            self.register_parameter("log_temperature", None)

    def current_temperature(self) -> float:
        """The temperature T in use now (the learned one when ``learn_temperature``)."""
        if self.log_temperature is not None:
            return float(self.log_temperature.detach().exp())
        return self.temperature

    def scores(self, embeddings: Tensor) -> Tensor:
        cosines = ace_scores(embeddings, self.signatures, self.background_mean, self.whitening, eps=self.eps)
        if self.log_temperature is not None:
            return cosines * torch.exp(-upcast_half(self.log_temperature)).to(cosines.dtype)
        if self.temperature != 1.0:
            return cosines / self.temperature
        return cosines

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.scores(embeddings)
        loss = F.cross_entropy(upcast_half(logits), labels.long())
        return HeadOutput(loss, logits, {"lace": loss})

    def feature_space(self, embeddings: Tensor) -> Tensor:
        """x̂ = W (x − μ_b) [B, d], the whitened embeddings; x itself with a per-class background."""
        if self.per_class_background:
            return embeddings
        centred = embeddings - self.background_mean if self.background_mean is not None else embeddings
        return whiten(centred, self.whitening)

    def learned_centroids(self) -> Tensor | None:
        """Unit-norm whitened signatures ŝ_c / ‖ŝ_c‖ [C, d] (global background), else ``None``."""
        if self.per_class_background:
            return None
        with torch.no_grad():
            return F.normalize(whiten(self.signatures, self.whitening), dim=-1, eps=self.eps)
