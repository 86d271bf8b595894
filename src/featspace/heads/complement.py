"""Complement objective training (COT): cross-entropy plus complement entropy."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from featspace.heads import hparams
from featspace.heads.base import HeadOutput, register_head, upcast_half
from featspace.heads.softmax import LinearClassifier

__all__ = ["ComplementObjectiveHead", "complement_entropy"]

#: how the batch-mean complement entropy is divided before it enters the loss (see ComplementObjectiveHead)
NORMALIZATIONS = ("log", "classes", "none")


def complement_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Entropy of each sample's normalised complement distribution (Chen et al., ICLR 2019, COT).

    With ŷ = softmax(z) and g the true class, the complement distribution is q_j = ŷ_j / (1 − ŷ_g), j ≠ g,
    and H_i = −Σ_{j≠g} q_j log q_j. Since ŷ_j / (1 − ŷ_g) = exp(z_j) / Σ_{k≠g} exp(z_k), q is the softmax of
    the logits with the target one removed, computed here as a masked log-softmax: no 1 − ŷ_g that rounds
    to 0 when the model is confident, no log of 0, and no 1e−7 / 1e−10 guards as in the authors' code.

    logits [B, C], labels [B] -> [B], each in [0, log(C − 1)].
    """
    target = F.one_hot(labels.long(), logits.shape[1]).bool()
    log_q = F.log_softmax(logits.masked_fill(target, float("-inf")), dim=1)
    # the target entry is −inf in log_q and 0 in q; zero it in log_q so that 0·(−inf) never appears
    return -(log_q.exp() * log_q.masked_fill(target, 0.0)).sum(dim=1)


@register_head("cot")
class ComplementObjectiveHead(LinearClassifier):
    """Linear softmax + complement entropy of the non-target probabilities (COT, Chen et al., ICLR 2019).

    loss = CE(W x + b, y) − lam · mean_i H_i / N_C

    with H_i the entropy of sample i's normalised non-target distribution (:func:`complement_entropy`)
    and N_C the normalisation chosen by ``normalize``. Maximising H flattens the probabilities of the
    wrong classes, which COT argues neutralises them and separates the classes. Logits and predictions are
    the linear classifier's scores (``weight`` [C, d], ``bias`` [C]).

    Departure from the paper: COT alternates two optimiser steps per batch, one on CE and one on the
    complement objective (−Ĉ), with the same learning rate. A head returns one loss, so featspace sums them
    with weight ``lam``: one step of size η on CE − lam·Ĉ with lam = 1 equals the two alternating steps up
    to O(η²) (θ − η∇CE(θ) − η∇(−Ĉ)(θ − η∇CE(θ)) = θ − η∇(CE − Ĉ)(θ) + O(η²)), for one forward and
    backward pass instead of two. tests/heads/test_complement.py checks that the gap shrinks as η².
    With stateful optimisers (momentum, Adam) the two schemes differ by more than that; users who need
    the exact alternation can call :func:`complement_entropy` in their own loop.

    Hyperparameters:
        lam: weight of the complement term, 1.0 (the alternating scheme's equal step sizes, above).
        normalize: N_C. ``"log"`` (default) divides by log(C − 1), the largest possible H, so the term
            lies in [0, 1] whatever C; ``"classes"`` divides by C, as the authors' public code
            (henry8527/COT, ``ComplementEntropy``) does; ``"none"`` leaves H as it is. With C = 2 the
            complement has one class, H ≡ 0, and the term is 0 under every choice.

    COT is not among the LACE paper's baselines (it is not mentioned there); the POD paper (002,
    Table 4 and Fig. 6) compares against it.
    """

    def __init__(self, embedding_dim: int, num_classes: int, lam: float = 1.0, normalize: str = "log") -> None:
        super().__init__(embedding_dim, num_classes)
        self.lam = hparams.weight("lam", lam, owner="cot")
        self.normalize = hparams.choice("normalize", normalize, NORMALIZATIONS, owner="cot")

    def _normalizer(self) -> float:
        if self.normalize == "log":
            # log(1) = 0 for C = 2, where H is identically 0: divide by 1 instead of 0
            return math.log(self.num_classes - 1) if self.num_classes > 2 else 1.0
        if self.normalize == "classes":
            return float(self.num_classes)
        return 1.0

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.scores(embeddings)
        wide = upcast_half(logits)
        ce = F.cross_entropy(wide, labels.long())
        complement = complement_entropy(wide, labels).mean() / self._normalizer()
        loss = ce - self.lam * complement
        return HeadOutput(loss, logits, {"ce": ce, "complement_entropy": complement})

