"""Angular margin contrastive loss (AMC) as a head, with the LACE paper's 0.9/0.1 weighting."""

from __future__ import annotations

__all__: list[str] = []
