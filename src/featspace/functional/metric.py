"""Metric-learning losses on a batch: NCA (003 eq. 4) and prototypical (003 eq. 3), leave-one-out."""

from __future__ import annotations

__all__: list[str] = []
