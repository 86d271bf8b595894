"""Heads with learned class centroids: intra-class variance (001 eq. 5) and center loss (001 eq. 7-8, Wen et al.)."""

from __future__ import annotations

__all__: list[str] = []
