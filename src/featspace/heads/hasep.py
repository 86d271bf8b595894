"""HASeparator (004_442ee0fd9060adbb.txt, eq. 4-8): cosine softmax plus a hyperplane-margin penalty."""

from __future__ import annotations

__all__: list[str] = []
