"""What the commands print: plain-text tables and the summary of a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["SUMMARY_COLUMNS", "format_table", "print_run", "text_table"]

# the table printed after training, and by the demo: (metric key, column title, format)
SUMMARY_COLUMNS = [
    ("accuracy", "acc", "{:.4f}"),
    ("ncc_accuracy", "NCC acc", "{:.4f}"),
    ("silhouette", "silhouette", "{:.3f}"),
    ("d_em", "D_EM (deg)", "{:.1f}"),
    ("train_seconds", "train s", "{:.1f}"),
]

# the metrics printed after a run, in this order where present
_RUN_KEYS = ("accuracy", "ncc_accuracy", "ncc_accuracy_cosine", "ncc_learned_accuracy", "silhouette",
             "davies_bouldin", "calinski_harabasz", "homogeneity", "completeness", "d_em", "d_kl",
             "discriminant_total", "train_seconds")


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, the first left-aligned and the others right-aligned, with a rule
    under the header."""
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], first: str = "head") -> str:
    """A plain-text table: one row per dict, ``first`` as the leading column; columns are (key, title, format)."""
    body = []
    for row in rows:
        cells = [str(row.get(first, ""))]
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value) if isinstance(value, (int, float)) else str(value))
        body.append(cells)
    return text_table([first] + [title for _, title, _ in columns], body)


def print_run(run_id: str, path: Any, metrics: dict[str, Any], plots: Sequence[Any] = ()) -> None:
    """The lines printed after a run is trained or evaluated: its directory, main metrics and figures."""
    print(f"\nrun {run_id}: {path}")
    for key in (k for k in _RUN_KEYS if isinstance(metrics.get(k), (int, float))):
        print(f"  {key:<24} {metrics[key]:.4f}")
    for path in plots:
        print(f"  plot: {path}")
