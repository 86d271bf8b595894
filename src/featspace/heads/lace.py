"""LACE (000_96dfa70546181807.txt, eq. 3-4, Alg. 1): cross-entropy on learned adaptive cosine estimator scores."""

from __future__ import annotations

__all__: list[str] = []
