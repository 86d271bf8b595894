"""Reports of runs, drawn from what run directories and the index hold (``featspace.rundir``); it never imports
training or benches.

- ``run_figures``: the figures of one run (embeddings, centroids per epoch, pair angles, curves, t-SNE), drawn
  by ``plots`` from the run's files;
- ``tables``: suites' tables (mean ± std over seeds, beside the papers' numbers); ``charts``: heatmaps and
  scatters across a suite's configurations; ``model``: what a report holds; ``build``: Markdown, CSV and the
  figures folder; ``html``: the self-contained page.

Submodules are imported on use, so importing ``featspace.report`` does not load matplotlib.
"""
