"""Heads on fixed PEDCC centroids (002_ec5345d43eb6f956.txt): pod, nac, cosine, pedcc_loss."""

from __future__ import annotations

__all__: list[str] = []
