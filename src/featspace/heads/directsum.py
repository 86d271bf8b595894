"""Direct-sum integration of classification and metric losses (003_3b01b74d9ee629e7.txt), and nca/proto alone."""

from __future__ import annotations

__all__: list[str] = []
