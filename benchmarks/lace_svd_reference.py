"""The LACE authors' parameterisation, kept as a *reference* for speed comparisons, not as product code.

The authors' code (GatorSense/LACE, ``Utils/loss_functions.py``, class ``ACELoss`` with ``single_stats=True``,
as ``Utils/Loss_Model.py`` builds it for the paper's "LACE" rows) learns

    signatures S [C, d], background mean μ_b [d], and a square matrix B [d, d] (``b_covs``),

and at every step forms B·Bᵀ, takes its SVD U·D·Uᵀ, whitens with D^{-1/2}·Uᵀ, centres x (not the
signatures), L2-normalises both, and applies the softmax cross-entropy to the signed cosines, with no
scale. This module does the same with ``torch.linalg.svd`` (the authors call the older ``torch.svd``, and
retry with B·Bᵀ + 1e-7·I when it fails). Initialisation follows the authors: S and μ_b uniform in ±1/√d,
B standard normal.

Because the cosines depend on the whitening factor only through Σ_b⁻¹ = (B·Bᵀ)⁻¹, featspace's ``lace``
head with ``whitening = B⁻¹`` (or ``D^{-1/2}Uᵀ``) gives the same loss; ``equivalent_whitening()`` returns
that factor, and tests/heads/test_lace.py checks the equality. The difference is cost: an SVD of a d×d
matrix per step (and its backward) against two matrix products.

Run it as a script for a quick CPU timing of one forward+backward step of both at (B, d, C) = (256, 512, 100)
(``benchmarks/heads.py`` is the benchmark of record).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LaceSVDReference"]


class LaceSVDReference(nn.Module):
    """The authors' LACE layer: learned B, Σ_b = B·Bᵀ, whitening D^{-1/2}Uᵀ from an SVD at every step.

    forward(x [B, d], y [B]) -> scalar loss (same interface as the loss term of the authors' code).
    """

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(embedding_dim)
        self.signatures = nn.Parameter(torch.empty(num_classes, embedding_dim).uniform_(-bound, bound))
        self.background_mean = nn.Parameter(torch.empty(embedding_dim).uniform_(-bound, bound))
        self.covariance_factor = nn.Parameter(torch.randn(embedding_dim, embedding_dim))

    def whitening_from_svd(self) -> Tensor:
        """D^{-1/2}Uᵀ [d, d] with U·D·Uᵀ the SVD of B·Bᵀ, as the authors compute it each step."""
        covariance = self.covariance_factor @ self.covariance_factor.T
        try:
            u, eigenvalues, _ = torch.linalg.svd(covariance)
        except RuntimeError:  # the authors' fallback when the SVD does not converge
            eye = torch.eye(covariance.shape[0], dtype=covariance.dtype, device=covariance.device)
            u, eigenvalues, _ = torch.linalg.svd(covariance + 1e-7 * eye)
        return eigenvalues.pow(-0.5)[:, None] * u.T

    def scores(self, x: Tensor) -> Tensor:
        """Signed cosines [B, C] between D^{-1/2}Uᵀ(x − μ_b) and D^{-1/2}Uᵀ s_c."""
        whitening = self.whitening_from_svd()
        x_hat = F.normalize((x - self.background_mean) @ whitening.T, dim=1)
        s_hat = F.normalize(self.signatures @ whitening.T, dim=1)
        return x_hat @ s_hat.T

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self.scores(x), y.long())

    @torch.no_grad()
    def equivalent_whitening(self) -> Tensor:
        """A factor W with WᵀW = (B·Bᵀ)⁻¹ (here B⁻¹), which makes featspace's ``lace`` head score identically."""
        return torch.linalg.inv(self.covariance_factor)


def _time_step(module: nn.Module, x: Tensor, y: Tensor, repeats: int) -> float:
    """Fastest of ``repeats`` forward+backward steps, in seconds (the minimum resists a busy machine)."""
    import time

    def step() -> None:
        out = module(x, y)
        loss = out.loss if hasattr(out, "loss") else out
        loss.backward()
        module.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from featspace import heads

    batch, dim, classes = 256, 512, 100
    torch.manual_seed(0)
    x = torch.randn(batch, dim)
    y = torch.randint(0, classes, (batch,))
    reference = LaceSVDReference(dim, classes)
    head = heads.build("lace", dim, classes)
    t_ref = _time_step(reference, x, y, repeats=10)
    t_head = _time_step(head, x, y, repeats=30)
    print(f"(B, d, C) = ({batch}, {dim}, {classes}), CPU, {torch.get_num_threads()} threads")
    print(f"authors' SVD parameterisation: {t_ref * 1e3:8.2f} ms / step (fastest of 10)")
    print(f"featspace lace (no SVD):       {t_head * 1e3:8.2f} ms / step (fastest of 30)")
    print(f"speed-up:                      {t_ref / t_head:8.1f}x")


if __name__ == "__main__":
    main()
