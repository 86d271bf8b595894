"""Direct-sum integration of classification and metric losses (003_3b01b74d9ee629e7.txt), and nca/proto alone.

The direct-sum paper (Kobayashi) trains a linear classifier with SCE or BCE (eq. 1-2) and adds a metric
loss, NCA or Proto (eq. 4, 3), computed on the embeddings projected onto the complement of the classifier
subspace span(W) (eq. 7-8), so that the two losses' gradients live in disjoint subspaces:

    ℓ_⊕ = E_i ℓ_cls(x_i, y_i; W, b) + ℓ_metric({W⊥W⊥ᵀ x_i, y_i}).

``mode`` selects the projection fed to the metric loss, covering the paper's ablations:

    mode             projection in ℓ_metric                    paper
    "direct"         x − W(WᵀW + εI)⁻¹Wᵀx                      eq. 7-8 (ours in Tables 1, 3, 4, 5)
    "spectral"       W̃ diag(1 − λ̃^p) W̃ᵀ x                      eq. 9-11 (Table 6), also for d ≤ C
    "sum"            x (identity)                              eq. 6, Table 3 i-1 ("SCE+NCA")
    "classifier"     W(WᵀW + εI)⁻¹Wᵀx                          Table 3 i-2 (metric inside span(W))
    "random_fixed"   (I − R Rᵀ) x, classifier ω on Rᵀx          Table 3 ii-1 (R ∈ R^{d×C} random orthonormal)
    "identity_fixed" (I − I_C I_Cᵀ) x, classifier ω on I_Cᵀx    Table 3 ii-2 (I_C the first C axes)

Shapes and layout follow featspace (``weight`` [C, d] = the paper's Wᵀ); the functional module
``featspace.functional.subspace`` gives the transposition in full.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featspace.functional.metric import nca_loss, proto_loss
from featspace.functional.rows import squared_distances
from featspace.functional.subspace import (
    classifier_projection,
    complement_projection,
    spectral_complement_projection,
)
from featspace.heads import hparams
from featspace.heads.base import Head, HeadOutput, register_head, upcast_half
from featspace.heads.softmax import LinearClassifier

__all__ = ["ClassMeanHead", "DirectSumHead", "NCAHead", "ProtoHead"]

CLASSIFICATION_LOSSES = ("sce", "bce")
METRIC_LOSSES = ("nca", "proto")
MODES = ("direct", "spectral", "sum", "classifier", "random_fixed", "identity_fixed")
FIXED_MODES = ("random_fixed", "identity_fixed")


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    # The metric losses and projections subtract nearly equal numbers (distances by Gram expansion,
    # x minus its projection): under bf16 autocast their matmuls would keep ~3 significant digits.
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to switch off
        return contextlib.nullcontext()


def _metric(metric: str, x: Tensor, y: Tensor, num_classes: int) -> Tensor:
    return nca_loss(x, y) if metric == "nca" else proto_loss(x, y, num_classes)


def _random_orthonormal_rows(rows: int, dim: int, seed: int) -> Tensor:
    """[rows, dim] with orthonormal rows, Haar-distributed (QR of a Gaussian with the signs fixed)."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, rows, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))[None, :]
    return q.T.to(torch.get_default_dtype()).contiguous()


@register_head("directsum")
class DirectSumHead(LinearClassifier):
    """Direct-sum loss: SCE/BCE classifier plus NCA/Proto on the complement of the classifier subspace (003).

    loss = ℓ_cls + lam · ℓ_metric(projection(x_all), y_all)   (003 eq. 7; eq. 6 and 11 by ``mode``)

    - ℓ_cls: ``cls="sce"`` (eq. 1, mean over the batch) or ``"bce"`` (eq. 2: the C binary terms summed per
      sample, then averaged over the batch), on the local batch. Its scores x·Wᵀ + b are the ``logits``.
    - ℓ_metric: ``metric="nca"`` (eq. 4) or ``"proto"`` (eq. 3), leave-one-out, see
      ``featspace.functional.metric``; computed on the gathered batch (``uses_batch_statistics``).
    - projection: ``mode``, see the module docstring. ``eps`` (default 1e-3, the paper's, Sec. 2.4) is
      the ε of eq. 8 in "direct" and "classifier"; ``p`` (default 0.3, the best in Table 6) the power of
      eq. 11 in "spectral" (0 ≤ p ≤ 1 as in the paper; p = 0 is the exact direct sum).
    - ``lam`` (default 1): the paper adds the two losses with no weight (eq. 6, 7, 11).
    - ``detach_projection``: by default the metric loss's gradient also flows through the projection into
      ``weight``, as eq. 7 is written (the paper says nothing on stopping it); True stops it, so that the
      classifier is trained by ℓ_cls alone. No effect in "sum" and the fixed modes (nothing to detach).
    - Fixed modes (Table 3 ii): the classifier is re-parameterised W = R ω (paper's layout) with a fixed
      orthonormal basis R ∈ R^{d×C}, stored as the buffer ``basis`` [C, d] (= Rᵀ), and trainable
      ``omega`` [C, C] (``nn.Linear(C, C)`` layout and init) plus ``bias``; ``weight`` is then the
      read-only product ``omega @ basis`` [C, d]. "random_fixed" draws R from ``basis_seed`` (Haar, by QR);
      "identity_fixed" takes the first C axes. Their complement is exact (I − RRᵀ, no ε).

    Shapes: embeddings [B, d], labels [B]; ``weight`` [C, d], ``bias`` [C]; logits [B, C]. "direct" and
    the fixed modes need d > C (a complement to work in): for d ≤ C use "spectral" (Sec. 3.4).
    ``parts``: the unweighted terms, named ``cls`` and ``metric`` values (e.g. ``{"sce": …, "nca": …}``).
    """

    uses_batch_statistics = True

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        cls: str = "sce",
        metric: str = "nca",
        mode: str = "direct",
        lam: float = 1.0,
        eps: float = 1e-3,
        p: float = 0.3,
        detach_projection: bool = False,
        basis_seed: int = 0,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        self.cls = hparams.choice("cls", cls, CLASSIFICATION_LOSSES)
        self.metric = hparams.choice("metric", metric, METRIC_LOSSES)
        self.mode = hparams.choice("mode", mode, MODES)
        self.lam = hparams.weight("lam", lam)
        self.eps = hparams.real("eps", eps, low=0.0, low_open=True)
        self.p = hparams.real("p", p, low=0.0, high=1.0)
        self.detach_projection = hparams.boolean("detach_projection", detach_projection)
        self.basis_seed = hparams.integer("basis_seed", basis_seed)
        if self.mode in ("direct", *FIXED_MODES) and embedding_dim <= num_classes:
            raise ValueError(
                f"mode={self.mode!r} needs embedding_dim > num_classes (a complement of the classifier subspace), "
                f"got embedding_dim={embedding_dim}, num_classes={num_classes}; use mode='spectral' for d <= C"
            )
        if self.mode in FIXED_MODES:
            del self.weight  # replaced by omega @ basis (see __getattr__)
            if self.mode == "random_fixed":
                basis = _random_orthonormal_rows(num_classes, embedding_dim, basis_seed)
            else:
                basis = torch.eye(num_classes, embedding_dim)
            self.register_buffer("basis", basis)
            self.omega = nn.Parameter(torch.empty(num_classes, num_classes))
            bound = 1.0 / math.sqrt(num_classes)  # nn.Linear(C, C): Rᵀx has C inputs
            nn.init.uniform_(self.omega, -bound, bound)
            nn.init.uniform_(self.bias, -bound, bound)

    def __getattr__(self, name: str) -> Any:
        # In the fixed modes ``weight`` is the effective classifier omega @ basis [C, d], so that code
        # reading ``head.weight`` (metrics of the classifier subspace, layout checks) sees the same thing
        # in every mode.
        if name == "weight" and "omega" in self._parameters:
            return self._parameters["omega"] @ self._buffers["basis"]
        return super().__getattr__(name)

    def scores(self, embeddings: Tensor) -> Tensor:
        if self.mode in FIXED_MODES:
            return F.linear(F.linear(embeddings, self.basis), self.omega, self.bias)
        return super().scores(embeddings)

    def classification_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """ℓ_cls averaged over the batch: eq. 1 (SCE) or eq. 2 (BCE, C binary terms summed per sample).

        Averaged by ``sample_mean``, so that under DDP the processes' losses average to the global mean.
        """
        logits = upcast_half(logits)
        if self.cls == "sce":
            per_sample = F.cross_entropy(logits, labels.long(), reduction="none")
        else:
            targets = F.one_hot(labels.long(), self.num_classes).to(logits.dtype)
            per_sample = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1)
        return self.sample_mean(per_sample)

    def metric_features(self, embeddings: Tensor) -> Tensor:
        """The embeddings [n, d] projected by ``mode``, in at least float32: what ℓ_metric sees."""
        x = upcast_half(embeddings)
        if self.mode == "sum":
            return x
        if self.mode in FIXED_MODES:
            basis = self.basis.to(x.dtype)
            return x - (x @ basis.T) @ basis
        weight = self.weight.detach() if self.detach_projection else self.weight
        if self.mode == "direct":
            return complement_projection(x, weight, self.eps)
        if self.mode == "classifier":
            return classifier_projection(x, weight, self.eps)
        return spectral_complement_projection(x, weight, self.p)

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.scores(embeddings)
        cls_loss = self.classification_loss(logits, labels)
        x_all, y_all = self.gather_batch(embeddings, labels)
        with _autocast_off(embeddings.device):
            metric_loss = _metric(self.metric, self.metric_features(x_all), y_all.long(), self.num_classes)
        loss = cls_loss + self.lam * metric_loss
        return HeadOutput(loss, logits, {self.cls: cls_loss, self.metric: metric_loss})


class ClassMeanHead(Head):
    """Shared part of the classifier-free metric heads: running class means for nearest-mean scores.

    A metric loss has no classifier, so ``predict`` scores a sample by its negative squared distance to
    per-class means of training embeddings, −‖x − mean_c‖² (the nearest-class-centroid rule the paper
    evaluates with, Sec. 3.1). The means are an exponential moving average, kept in the buffers
    ``class_means`` [C, d] and ``class_seen`` [C] (so they are checkpointed): in a training forward, under
    ``no_grad``, each class c present in the (gathered) batch moves to
    ``(1 − momentum)·mean_c + momentum·batch_mean_c``, the first time to ``batch_mean_c`` itself.
    A moving average, rather than cumulative means reset by ``start_epoch``, follows the drifting
    embeddings the same way whether or not the loop calls ``start_epoch`` and across resumed runs.
    ``momentum`` defaults to 0.1 (BatchNorm's convention; not from the paper, which detaches the head).
    A class never seen in training scores the lowest finite value, so it is never predicted while
    another one has been seen. Logits of ``forward`` are the scores after the update, equal to ``scores(x)``.
    """

    uses_batch_statistics = True

    def __init__(self, embedding_dim: int, num_classes: int, momentum: float = 0.1) -> None:
        super().__init__(embedding_dim, num_classes)
        self.momentum = hparams.real("momentum", momentum, low=0.0, high=1.0, low_open=True)
        self.register_buffer("class_means", torch.zeros(num_classes, embedding_dim))
        self.register_buffer("class_seen", torch.zeros(num_classes, dtype=torch.bool))

    def metric_loss(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def update_means(self, x: Tensor, y: Tensor) -> None:
        """Move the running means of the classes present in x [n, d], y [n] towards their batch means.

        mean_c + rate_c·(batch_mean_c − mean_c) written per sample, mean_c += Σ_{i: y_i = c} (rate_c/n_c)(x_i − mean_c),
        scattered by ``index_add_``: O(n·d) work, where the [C, d] form touches every class each step (at
        C = 1000 that was most of the head's time besides the loss and the scores).
        """
        means = self.class_means
        counts = torch.zeros(self.num_classes, dtype=means.dtype, device=means.device)
        counts.index_add_(0, y, torch.ones(y.shape, dtype=means.dtype, device=means.device))
        rate = torch.where(self.class_seen, torch.full_like(counts, self.momentum), torch.ones_like(counts))
        coefficient = (rate / counts.clamp_min(1.0)).index_select(0, y)[:, None]
        means.index_add_(0, y, (x.to(means.dtype) - means.index_select(0, y)).mul_(coefficient))
        self.class_seen.index_fill_(0, y, True)

    def scores(self, embeddings: Tensor) -> Tensor:
        with _autocast_off(embeddings.device):
            x = upcast_half(embeddings)
            means = self.class_means.to(x.dtype)
            # ‖μ_c‖² by a norm, without the [C, d] temporary of pow(2).sum
            neg_dist = squared_distances(x, means, b_squared_norms=torch.linalg.vector_norm(means, dim=1).square())
            return neg_dist.neg_().masked_fill_(~self.class_seen[None, :], torch.finfo(x.dtype).min)

    def learned_centroids(self) -> Tensor | None:
        return self.class_means.detach().clone()

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        x_all, y_all = self.gather_batch(embeddings, labels)
        if self.training:
            self.update_means(x_all.detach(), y_all.long())
        with _autocast_off(embeddings.device):
            loss = self.metric_loss(upcast_half(x_all), y_all.long())
        return HeadOutput(loss, self.scores(embeddings), {self.name: loss})


@register_head("nca")
class NCAHead(ClassMeanHead):
    """NCA loss alone, leave-one-out (003 eq. 4); predicts by the nearest running class mean.

    loss = −E_i log Σ_{j≠i, y_j=y_i} e^{−‖x_i−x_j‖²} / Σ_{j≠i} e^{−‖x_i−x_j‖²} on the gathered batch
    (``featspace.functional.nca_loss``). No parameters; scores as :class:`ClassMeanHead`.
    """

    def metric_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return nca_loss(x, y)


@register_head("proto")
class ProtoHead(ClassMeanHead):
    """Prototypical loss alone, leave-one-out prototypes (003 eq. 3); predicts by the nearest running class mean.

    loss = −E_i log e^{−‖x_i−μ_{y_i,i}‖²} / Σ_c e^{−‖x_i−μ_{c,i}‖²}, μ_{c,i} the mean of class c without x_i,
    on the gathered batch (``featspace.functional.proto_loss``). No parameters; scores as :class:`ClassMeanHead`.
    """

    def metric_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return proto_loss(x, y, self.num_classes)
