"""Run figures: the head's centroids are drawn in the space they live in (Head.learned_centroids)."""

from __future__ import annotations

import torch

from featspace import heads
from featspace.report import plots
from featspace.train.evaluate import Embeddings, make_plots


def _split(head, n: int = 60) -> Embeddings:
    generator = torch.Generator().manual_seed(0)
    embeddings = 3.0 * torch.randn(n, 2, generator=generator)
    labels = torch.arange(n) % 3
    with torch.no_grad():
        return Embeddings(embeddings, labels, head.predict(embeddings), head.feature_space(embeddings))


def _recorded_scatters(monkeypatch) -> dict[str, object]:
    """plot name -> the centroids handed to plot_embeddings_2d (the drawing itself still runs)."""
    calls: dict[str, object] = {}
    real = plots.plot_embeddings_2d

    def record(embeddings, labels, path, **kwargs):
        calls[str(path).rsplit("/", 1)[-1]] = kwargs.get("centroids")
        return real(embeddings, labels, path, **kwargs)

    monkeypatch.setattr(plots, "plot_embeddings_2d", record)
    return calls


def test_normalised_icv_centroids_go_on_the_unit_space_plot_not_the_raw_one(tmp_path, monkeypatch):
    torch.manual_seed(0)
    head = heads.build("icv", 2, 3, normalize=True)
    calls = _recorded_scatters(monkeypatch)
    written = make_plots(tmp_path, head=head, test=_split(head), history_csv=None, centroid_history=None,
                         class_names=None, tsne=False)
    assert {p.name for p in written} >= {"embeddings.png", "feature_space.png"}
    assert calls["embeddings.png"] is None
    assert torch.equal(calls["feature_space.png"], head.learned_centroids().float())


def test_centroids_stay_on_the_embeddings_plot_when_the_head_compares_raw_embeddings(tmp_path, monkeypatch):
    torch.manual_seed(0)
    head = heads.build("icv", 2, 3)
    calls = _recorded_scatters(monkeypatch)
    written = make_plots(tmp_path, head=head, test=_split(head), history_csv=None, centroid_history=None,
                         class_names=None, tsne=True, title="icv / toy")
    assert "feature_space.png" not in {p.name for p in written} and "tsne.png" in {p.name for p in written}
    assert torch.equal(calls["embeddings.png"], head.learned_centroids().float())
