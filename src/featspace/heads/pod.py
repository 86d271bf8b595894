"""Heads on fixed PEDCC centroids (002_ec5345d43eb6f956.txt): pod, nac, cosine, pedcc_loss.

Every head here holds a fixed buffer ``centroids`` [C, d] = ``featspace.pedcc.generate(C, d, seed=pedcc_seed,
method=pedcc_method)`` (unit rows, pairwise cosine −1/(C−1)), has no learnable parameter, and classifies by
cosine (eq. 21–24): the scores are cos(x, pedcc_j) = x·pedcc_j / (‖x‖ + ε), ε = 1e-12 as eq. 10–11 take it.
Their argmax equals eq. 21's argmax of x·pedcc_j, since every centroid has unit length.

The cosines and losses are computed with autocast disabled, in float32 at least (float64 stays float64): the
matrix is only [B, C], and the NaC / Cosine losses square 1 − cos, which bf16 (3 significant digits near 1)
would round to zero for well-trained samples.

The pure math is exposed as functions (``pedcc_cosines``, ``norm_adaptive_cosine``,
``self_correlation_loss``) for metrics and tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from featspace import pedcc
from featspace.heads import hparams
from featspace.heads.base import Head, HeadOutput, register_head, upcast_half

__all__ = [
    "CosineHead",
    "NacHead",
    "PedccHead",
    "PedccLossHead",
    "PodHead",
    "norm_adaptive_cosine",
    "pedcc_cosines",
    "self_correlation_loss",
]

#: ε of eq. 10–11, keeps cosines finite for a zero feature
COSINE_EPS = 1e-12
#: M before the first epoch (002 Section 3.1.3: "its initial value is set to 0.05"); also the authors' code's
#: δ of the first epoch
INITIAL_MEAN_NORM = 0.05
_VARIANTS = ("text", "code")


# ------------------------------------------------------------------------------------------ pure math
def pedcc_cosines(embeddings: Tensor, centroids: Tensor, eps: float = COSINE_EPS) -> Tensor:
    """cos θ_j = x·pedcc_j / (‖x‖ + ε) for unit centroids, 002 eq. 11 and eq. 24.

    embeddings [B, d], centroids [C, d] (unit rows) -> [B, C].
    """
    return embeddings @ centroids.T / (torch.linalg.vector_norm(embeddings, dim=1, keepdim=True) + eps)


def norm_adaptive_cosine(
    embeddings: Tensor, target_centroids: Tensor, delta: Tensor | float, *, denominator: str = "sum",
    eps: float = COSINE_EPS,
) -> Tensor:
    """cos_Na θ_y = x·pedcc_y / (‖x‖ + δ), 002 eq. 12 and 16 (= cos θ_y / (1 + δ/‖x‖)).

    embeddings [B, d], target_centroids [B, d] (the unit centroid of each sample's class), δ a scalar -> [B].
    ``denominator="sum"`` is the text's ‖x‖ + δ (+ ε, so that δ = 0 gives eq. 11 exactly and a zero feature
    stays finite); ``"hypot"`` is the authors' code, √(‖x‖² + δ²) (+ ε² under the root, for δ = 0 and x = 0).
    """
    dots = (embeddings * target_centroids).sum(1)
    if denominator == "sum":
        return dots / (torch.linalg.vector_norm(embeddings, dim=1) + delta + eps)
    if denominator == "hypot":
        return dots / torch.sqrt((embeddings * embeddings).sum(1) + delta**2 + eps**2)
    raise ValueError(f"denominator must be 'sum' or 'hypot', got {denominator!r}")


def self_correlation_loss(
    normalized_embeddings: Tensor, target_centroids: Tensor, *, divide_by_dim: bool = False
) -> Tensor:
    """SC loss, 002 eq. 18–19: Σ_{i≠j} R_ij² with R = (X − X_pedcc)(X − X_pedcc)ᵀ / (B − 1).

    normalized_embeddings [B, d] (unit rows, the text's X has them as columns), target_centroids [B, d] ->
    scalar. R is the d×d *uncentred* second-moment matrix of the differences D = x̃_i − pedcc_{y_i} (the
    paper's "self-correlation"; no mean is subtracted). ``divide_by_dim`` divides by (d − 1) as the authors'
    code does (by 1 when d = 1, where the sum is empty). A batch of one has no B − 1 and gives 0 (with a
    gradient).

    Fast form: ‖R‖_F² = ‖DᵀD‖_F² = ‖DDᵀ‖_F² / (B−1)², so when B < d the B×B Gram matrix replaces the d×d one;
    the diagonal R_kk = Σ_i D_ik² / (B−1) costs B·d either way.
    """
    batch, dim = normalized_embeddings.shape
    if batch < 2:
        return normalized_embeddings.sum() * 0.0
    differences = normalized_embeddings - target_centroids
    if batch < dim:
        frobenius_sq = (differences @ differences.T).square().sum()
    else:
        frobenius_sq = (differences.T @ differences).square().sum()
    diagonal_sq = differences.square().sum(0).square().sum()
    loss = (frobenius_sq - diagonal_sq) / (batch - 1) ** 2
    if divide_by_dim:
        loss = loss / max(dim - 1, 1)
    return loss


# x/(‖x‖ + ε), the ε of eq. 10–11 that pedcc_cosines also adds: not featspace.functional.normalize_rows'
# floor max(‖x‖, ε), so that SC and MSE see exactly the x̃ whose cosines the scores are
def _normalize(embeddings: Tensor, eps: float = COSINE_EPS) -> Tensor:
    return embeddings / (torch.linalg.vector_norm(embeddings, dim=1, keepdim=True) + eps)


# ----------------------------------------------------------------------------------------------- heads
class PedccHead(Head):
    """Shared part of the heads on fixed PEDCC centroids: the ``centroids`` buffer and cosine scores.

    ``pedcc_seed`` picks the random rotation of the simplex; ``pedcc_method`` is ``"exact"`` (needs
    C ≤ d + 1, else ``ValueError``) or ``"repulsion"`` (approximate, any C), see ``featspace.pedcc``.
    """

    def __init__(self, embedding_dim: int, num_classes: int, pedcc_seed: int = 0, pedcc_method: str = "exact") -> None:
        super().__init__(embedding_dim, num_classes)
        hparams.choice("pedcc_method", pedcc_method, ("exact", "repulsion"))
        hparams.integer("pedcc_seed", pedcc_seed)
        self.pedcc_seed = pedcc_seed
        self.pedcc_method = pedcc_method
        try:
            centroids = pedcc.generate(num_classes, embedding_dim, seed=pedcc_seed, method=pedcc_method)
        except ValueError as error:  # name the head's option, not generate()'s argument
            raise ValueError(f"{error} (as this head's hyperparameter: pedcc_method='repulsion')") from None
        self.register_buffer("centroids", centroids)

    def _compute_dtype(self, embeddings: Tensor) -> torch.dtype:
        return torch.promote_types(upcast_half(embeddings).dtype, upcast_half(self.centroids).dtype)

    def _autocast_off(self, embeddings: Tensor) -> torch.autocast:
        return torch.autocast(device_type=embeddings.device.type, enabled=False)

    def scores(self, embeddings: Tensor) -> Tensor:
        """cos(x, pedcc_j) [B, C], eq. 24."""
        with self._autocast_off(embeddings):
            dtype = self._compute_dtype(embeddings)
            return pedcc_cosines(embeddings.to(dtype), self.centroids.to(dtype))

    def learned_centroids(self) -> Tensor:
        return self.centroids


@register_head("cosine")
class CosineHead(PedccHead):
    """Cosine loss to fixed PEDCC centroids, L = mean (1 − cos θ_y)² (POD paper eq. 9), cosine classification.

    cos θ_y = x·pedcc_y / (‖x‖ + ε), eq. 11 with ε = 1e-12. Shapes: x [B, d], centroids [C, d].
    """

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.scores(embeddings)
        target_cosines = logits.gather(1, labels.long()[:, None]).squeeze(1)
        cosine = (1.0 - target_cosines).square().mean()
        return HeadOutput(cosine, logits, {"cosine": cosine})


@register_head("nac")
class NacHead(PedccHead):
    """Norm-adaptive Cosine (NaC) loss to fixed PEDCC centroids (POD paper eq. 16–17), cosine classification.

    L_NaC = mean_i (1 − cos_Na θ_{y_i})², cos_Na θ_y = cos θ_y / (1 + δ(e, M)/‖x‖) = x·pedcc_y / (‖x‖ + δ),
    δ(e, M) = α·e·M with e the epoch (1-based) and M the mean feature norm ‖x‖ over the training samples of the
    previous epoch (M = 0.05 before the first one). Shapes: x [B, d], centroids [C, d].

    The head tracks M itself: every training-mode forward adds Σ‖x‖ and B to the buffers ``epoch_norm_sum``
    and ``epoch_norm_count`` (under ``no_grad``); ``start_epoch(e)`` turns them into ``mean_norm`` (M), resets
    them and sets the buffer ``delta`` for epoch e. All four are buffers, so a checkpoint restores the schedule.
    A loop must call ``start_epoch(e)`` before each epoch (featspace's does); without it δ stays at δ₁.
    Evaluation-mode forwards leave the statistics alone.

    ``variant="text"`` (default) follows the paper as written. ``variant="code"`` reproduces the authors'
    train.py, which differs in four coupled places: M is the mean norm of the PEDCC-layer output x·PEDCCᵀ, not
    of x; δ is 0.05 in the first epoch and α·(e−1)·M after (the code's ``alpha * (epoch + 1) * mean`` with a
    0-based epoch that has just finished); cos_Na divides by √(‖x‖² + δ²) instead of ‖x‖ + δ; and (``pod``
    only) SC is divided by d − 1.

    Under DDP, ``start_epoch`` all-reduces the two accumulators first (``sync_epoch_norm_statistics``), so it
    must be called on every process, as Lightning's epoch hooks are. A loop that all-reduces
    ``epoch_norm_statistics()`` itself does no harm: M is their ratio, unchanged when both are scaled.
    α = 0.01 is the paper's (Sections 4.2.1–4.2.5; α = 0.1 is shown to hurt in Fig. 6).
    """

    def __init__(self, embedding_dim: int, num_classes: int, alpha: float = 0.01, variant: str = "text",
                 pedcc_seed: int = 0, pedcc_method: str = "exact") -> None:
        hparams.real("alpha", alpha, low=0.0)
        hparams.choice("variant", variant, _VARIANTS)
        super().__init__(embedding_dim, num_classes, pedcc_seed, pedcc_method)
        self.alpha = alpha
        self.variant = variant
        self.register_buffer("epoch_norm_sum", torch.zeros((), dtype=torch.float32))
        self.register_buffer("epoch_norm_count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("mean_norm", torch.tensor(INITIAL_MEAN_NORM, dtype=torch.float32))
        self.register_buffer("delta", torch.tensor(self._delta_for(1, INITIAL_MEAN_NORM), dtype=torch.float32))

    # ------------------------------------------------------------------------------- δ schedule
    def _delta_for(self, epoch: int, mean_norm: float) -> float:
        if self.variant == "text":
            return self.alpha * epoch * mean_norm
        return INITIAL_MEAN_NORM if epoch == 1 else self.alpha * (epoch - 1) * mean_norm

    def epoch_norm_statistics(self) -> tuple[Tensor, Tensor]:
        """The live accumulators (Σ norms, count) of the current epoch, for a loop to all-reduce in place."""
        return self.epoch_norm_sum, self.epoch_norm_count

    def sync_epoch_norm_statistics(self) -> None:
        """Sum the accumulators over all processes (no-op on one process). Collective: call on every rank."""
        from featspace.distributed import is_distributed  # local: keeps heads importable alone

        if is_distributed():
            import torch.distributed as dist

            for statistic in self.epoch_norm_statistics():
                dist.all_reduce(statistic)

    def start_epoch(self, epoch: int) -> None:
        """Set δ for epoch ``epoch`` (1-based) from the mean norm of the epoch just finished."""
        hparams.integer("epoch", epoch, low=1, hint="1-based")
        self.sync_epoch_norm_statistics()
        with torch.no_grad():
            if int(self.epoch_norm_count) > 0:
                self.mean_norm.fill_(float(self.epoch_norm_sum) / int(self.epoch_norm_count))
            # No samples since the last call (first epoch, a repeated call, a resumed run whose checkpoint was
            # taken after start_epoch): M stays as it was.
            self.epoch_norm_sum.zero_()
            self.epoch_norm_count.zero_()
            self.delta.fill_(self._delta_for(epoch, float(self.mean_norm)))

    def _apply(self, fn, recurse=True):  # nn.Module's private hook behind .to(), .half(), .cuda()
        # Casting the head to half precision (e.g. Lightning's "16-true") must not make the epoch sum of norms
        # overflow float16 or lose bf16's 8 bits: keep the schedule's statistics in float32 at least.
        super()._apply(fn, recurse)
        for name in ("epoch_norm_sum", "mean_norm", "delta"):
            buffer = getattr(self, name)
            if buffer.dtype in (torch.float16, torch.bfloat16):
                setattr(self, name, buffer.float())
        return self

    # ------------------------------------------------------------------------------------- loss
    def _accumulate_norms(self, embeddings: Tensor, raw_dots: Tensor) -> None:
        with torch.no_grad():
            source = embeddings if self.variant == "text" else raw_dots
            norms = torch.linalg.vector_norm(source.detach(), dim=1)
            self.epoch_norm_sum += norms.sum().to(self.epoch_norm_sum.dtype)
            self.epoch_norm_count += norms.shape[0]

    def _nac_and_logits(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(L_NaC, cosine logits [B, C], x in the compute dtype)."""
        dtype = self._compute_dtype(embeddings)
        x = embeddings.to(dtype)
        centroids = self.centroids.to(dtype)
        raw_dots = x @ centroids.T  # eq. 21's x·pedcc_j, shared by the scores and the norm of the code variant
        logits = raw_dots / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + COSINE_EPS)
        if self.training:
            self._accumulate_norms(x, raw_dots)
        delta = self.delta.to(dtype)
        denominator = "sum" if self.variant == "text" else "hypot"
        cos_na = norm_adaptive_cosine(x, centroids[labels.long()], delta, denominator=denominator)
        nac = self.sample_mean((1.0 - cos_na).square())  # = mean; exact under DDP with uneven shards
        return nac, logits, x

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        with self._autocast_off(embeddings):
            nac, logits, _ = self._nac_and_logits(embeddings, labels)
        return HeadOutput(nac, logits, {"nac": nac})


@register_head("pod")
class PodHead(NacHead):
    """POD loss on fixed PEDCC centroids, L = L_NaC + λ·L_SC (POD paper eq. 16–20), cosine classification.

    L_NaC: see ``nac`` (eq. 16–17, δ(e, M) = α·e·M tracked across epochs by ``start_epoch``).
    L_SC = Σ_{i≠j} R_ij², R = (X̃ − X_pedcc)(X̃ − X_pedcc)ᵀ/(B − 1) (eq. 18–19) on the L2-normalised features
    of the whole (DDP-gathered) batch; see ``self_correlation_loss``. Shapes: x [B, d], centroids [C, d].
    α = 0.01, λ = 1 are the paper's (Sections 4.2.1 and 4.2.4). ``variant="code"`` also divides SC by d − 1
    as the authors' code does, which with d = 256 is a 255× smaller SC weight than the text's.
    """

    uses_batch_statistics = True

    def __init__(self, embedding_dim: int, num_classes: int, alpha: float = 0.01, lam: float = 1.0,
                 variant: str = "text", pedcc_seed: int = 0, pedcc_method: str = "exact") -> None:
        hparams.weight("lam", lam)
        super().__init__(embedding_dim, num_classes, alpha, variant, pedcc_seed, pedcc_method)
        self.lam = lam

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        with self._autocast_off(embeddings):
            nac, logits, x = self._nac_and_logits(embeddings, labels)
            x_all, y_all = self.gather_batch(x, labels)
            sc = self_correlation_loss(_normalize(x_all), self.centroids.to(x.dtype)[y_all.long()],
                                       divide_by_dim=self.variant == "code")
        loss = nac + self.lam * sc
        return HeadOutput(loss, logits, {"nac": nac, "sc": sc})


@register_head("pedcc_loss")
class PedccLossHead(PedccHead):
    """PEDCC-Loss: AM-softmax on fixed PEDCC centroids + λ·ⁿ√MSE to the centroid (POD paper eq. 2–4).

    L = CE(s·(cos θ − m·onehot(y))) + λ·(1/(2N) Σ_i ‖x̃_i − pedcc_{y_i}‖²)^{1/n}, x̃ = x/‖x‖ (eq. 3 states both
    vectors normalised, so the MSE term equals mean(1 − cos θ_y)). Shapes: x [B, d], centroids [C, d].
    Scores are s·cos θ_j (no margin): the logits whose softmax the loss trains.

    Defaults: scale s = 15 and margin m = 0.5 from the PEDCC-Loss authors' code (config ``METRIC.S``/``M``;
    the POD paper's Table 4 quotes m = 0.5 and no s); λ = 1 and n = 1 also from that code. The margin is the
    additive *cosine* margin of AM-softmax (like ``cosface``), not an angle. Departures from that code: it sums
    the squared error over the batch and dimensions (``MSELoss(reduction="sum")``, i.e. 2N times eq. 3; set
    ``lam = 2·B`` to reproduce it) and raises it to the power N where the text takes the n-th root (identical
    for the default n = 1). The MSE term is a mean over the DDP-gathered batch, so its root is the global one.
    """

    uses_batch_statistics = True

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 15.0, margin: float = 0.5,
                 lam: float = 1.0, mse_root: float = 1.0, pedcc_seed: int = 0, pedcc_method: str = "exact") -> None:
        hparams.scale("scale", scale)
        hparams.real("margin", margin, low=0.0)
        hparams.weight("lam", lam)
        hparams.real("mse_root", mse_root, low=1.0, hint="n of eq. 4")
        super().__init__(embedding_dim, num_classes, pedcc_seed, pedcc_method)
        self.scale = scale
        self.margin = margin
        self.lam = lam
        self.mse_root = mse_root

    def scores(self, embeddings: Tensor) -> Tensor:
        """s·cos(x, pedcc_j) [B, C]."""
        return self.scale * super().scores(embeddings)

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        y = labels.long()
        with self._autocast_off(embeddings):
            dtype = self._compute_dtype(embeddings)
            x = embeddings.to(dtype)
            centroids = self.centroids.to(dtype)
            cosines = pedcc_cosines(x, centroids)
            logits = self.scale * cosines
            margin_logits = self.scale * (cosines - self.margin * F.one_hot(y, self.num_classes).to(dtype))
            am_softmax = self.sample_mean(F.cross_entropy(margin_logits, y, reduction="none"))
            x_all, y_all = self.gather_batch(x, y)
            mse = 0.5 * (_normalize(x_all) - centroids[y_all.long()]).square().sum(1).mean()
            if self.mse_root != 1:
                # The root's slope is infinite at 0; a feature exactly on its centroid gets a zero gradient instead.
                mse_term = mse.clamp_min(1e-12) ** (1.0 / self.mse_root)
            else:
                mse_term = mse
        loss = am_softmax + self.lam * mse_term
        return HeadOutput(loss, logits, {"am_softmax": am_softmax, "mse": mse_term})
