"""Linear classifiers with softmax or one-vs-all sigmoid cross-entropy: the plain baselines.

Both follow the direct-sum paper (003_3b01b74d9ee629e7.txt): SCE is its eq. (1), BCE its eq. (2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featspace.heads import hparams
from featspace.heads.base import Head, HeadOutput, register_head, upcast_half

__all__ = ["SoftmaxHead", "BCEHead", "LinearClassifier"]


class LinearClassifier(Head):
    """Shared part of heads whose scores are ``x·Wᵀ + b`` with ``weight`` [C, d] and ``bias`` [C].

    Initialised as ``nn.Linear`` is (uniform ±1/√d), so results match a plain ``nn.Linear`` classifier.
    """

    def __init__(self, embedding_dim: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(embedding_dim, num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        if hparams.boolean("bias", bias):  # the string 'False' is truthy: only a real bool is accepted
            self.bias = nn.Parameter(torch.empty(num_classes))
        else:
            self.register_parameter("bias", None)
        bound = 1.0 / math.sqrt(embedding_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def scores(self, embeddings: Tensor) -> Tensor:
        return F.linear(embeddings, self.weight, self.bias)


@register_head("softmax")
class SoftmaxHead(LinearClassifier):
    """Linear classifier + softmax cross-entropy (SCE, 003 eq. 1); the baseline of every paper.

    loss = mean_i −log softmax(W x_i + b)_{y_i}.  Shapes: x [B, d], weight [C, d], bias [C].
    """

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.scores(embeddings)
        ce = F.cross_entropy(upcast_half(logits), labels.long())
        return HeadOutput(ce, logits, {"ce": ce})


@register_head("bce")
class BCEHead(LinearClassifier):
    """Linear classifier + one-vs-all binary cross-entropy (BCE, 003 eq. 2).

    loss = mean_i [ −log σ(z_{i,y_i}) − Σ_{c≠y_i} log(1 − σ(z_{i,c})) ],  z = W x + b.
    Note the sum over the C binary tasks (not their mean), as eq. 2 is written.
    """

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.scores(embeddings)
        targets = F.one_hot(labels.long(), self.num_classes).to(upcast_half(logits).dtype)
        per_sample = F.binary_cross_entropy_with_logits(upcast_half(logits), targets, reduction="none").sum(1)
        bce = per_sample.mean()
        return HeadOutput(bce, logits, {"bce": bce})
