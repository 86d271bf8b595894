"""The adaptive cosine estimator (LACE paper 000, eq. 3-4): scores in a learned whitened space."""

from __future__ import annotations

__all__: list[str] = []
