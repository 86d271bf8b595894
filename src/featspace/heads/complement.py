"""Complement objective training (COT): cross-entropy plus complement entropy."""

from __future__ import annotations

__all__: list[str] = []
