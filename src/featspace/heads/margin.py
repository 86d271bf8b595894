"""Cosine-margin softmax heads: normface, cosface, arcface, sphereface, lsoftmax, combined_margin."""

from __future__ import annotations

__all__: list[str] = []
