"""Projections onto the complement of the classifier subspace (003 eq. 7-11): direct and spectral."""

from __future__ import annotations

__all__: list[str] = []
