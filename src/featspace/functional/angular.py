"""Angular math shared by the cosine-margin heads and HASeparator (004 eq. 4-8)."""

from __future__ import annotations

__all__: list[str] = []
