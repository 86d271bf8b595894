"""Run figures are drawn from the run directory alone, and the head's centroids in the space they live in
(Head.learned_centroids)."""

from __future__ import annotations

import numpy as np
import torch

from featspace import heads
from featspace.config import TrainConfig
from featspace.report import plots
from featspace.report.run_figures import draw_run_figures
from featspace.rundir import RunDir


def _run(tmp_path, head, *, tsne: bool, n: int = 60) -> RunDir:
    """A run directory holding what the evaluation writes: config and embeddings.npz (no training)."""
    generator = torch.Generator().manual_seed(0)
    embeddings = 3.0 * torch.randn(n, 2, generator=generator)
    labels = torch.arange(n) % 3
    with torch.no_grad():
        space = head.feature_space(embeddings)
        arrays = {"test_embeddings": embeddings.numpy(), "test_labels": labels.numpy(),
                  "test_scores": head.predict(embeddings).numpy(), "class_names": np.array(["a", "b", "c"])}
        if head.learned_centroids() is not None:
            arrays["learned_centroids"] = head.learned_centroids().float().numpy()
    if not torch.equal(space, embeddings):
        arrays["test_feature_space"] = space.numpy()
    rundir = RunDir(tmp_path / "run")
    rundir.claim(TrainConfig(head="icv", tsne=tsne))
    rundir.write_embeddings(arrays)
    return rundir


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
    written = draw_run_figures(_run(tmp_path, head, tsne=False).path)
    assert {p.name for p in written} >= {"embeddings.png", "feature_space.png"}
    assert calls["embeddings.png"] is None
    assert np.array_equal(calls["feature_space.png"], head.learned_centroids().float().detach().numpy())


def test_centroids_stay_on_the_embeddings_plot_when_the_head_compares_raw_embeddings(tmp_path, monkeypatch):
    torch.manual_seed(0)
    head = heads.build("icv", 2, 3)
    calls = _recorded_scatters(monkeypatch)
    written = draw_run_figures(_run(tmp_path, head, tsne=True).path)
    assert "feature_space.png" not in {p.name for p in written} and "tsne.png" in {p.name for p in written}
    assert np.array_equal(calls["embeddings.png"], head.learned_centroids().float().detach().numpy())


def test_tsne_follows_the_argument_over_the_runs_setting(tmp_path):
    head = heads.build("softmax", 2, 3)
    written = draw_run_figures(_run(tmp_path, head, tsne=True).path, tsne=False)
    assert "tsne.png" not in {p.name for p in written} and "embeddings.png" in {p.name for p in written}


def test_timings_name_every_figure_drawn(tmp_path):
    head = heads.build("softmax", 2, 3)
    timings: dict[str, float] = {}
    written = draw_run_figures(_run(tmp_path, head, tsne=True).path, timings=timings)
    assert set(timings) == {p.name for p in written} | {"read files"}
    assert all(seconds >= 0 for seconds in timings.values())
