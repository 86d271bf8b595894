"""Reports of runs: figures of one run's feature space (``featspace.report.plots``) and comparison tables
and HTML pages across runs (``tables``, ``html``, ``build``, ``command``).

Submodules are imported on use, so importing ``featspace.report`` does not load matplotlib.
"""
