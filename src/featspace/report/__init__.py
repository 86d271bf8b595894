"""Reports of runs, drawn from what run directories and the index hold (``featspace.rundir``); it never imports
training or benches.

- ``run_figures``: the figures of one run (embeddings, centroids per epoch, pair angles, curves, t-SNE), drawn
  by ``plots`` from the run's files;
- ``tables``: suites' tables (mean ± std over seeds, beside the papers' numbers); ``charts``: heatmaps and
  scatters across a suite's configurations; ``model``: what a report holds; ``build``: Markdown, CSV and the
  figures folder; ``html``: the self-contained page.

Submodules are imported on use, so importing ``featspace.report`` does not load matplotlib.
"""

from typing import Any

__all__ = ["build_report", "draw_run_figures"]

#: public name -> its submodule, imported on first use
_LAZY = {"build_report": "build", "draw_run_figures": "run_figures"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"featspace.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'featspace.report' has no attribute {name!r}")
