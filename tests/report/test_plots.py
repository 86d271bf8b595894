"""Every plot writes a valid, non-empty PNG atomically and returns its path; bad inputs raise ValueError.

(The figures were also opened and looked at while writing them; these tests only guard the mechanics.)"""

from __future__ import annotations

import csv

import matplotlib.image
import numpy as np
import pytest
import torch

from featspace.metrics import angular_separation
from featspace.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path, expected):
    assert path == expected
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # not a blank canvas
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left over


def _blobs(n=300, d=2, c=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 4
    y = np.arange(n) % c
    return centres[y] + rng.normal(size=(n, d)), y, centres


@pytest.mark.parametrize("d", [2, 16])
def test_embeddings_2d(tmp_path, d):
    x, y, centres = _blobs(d=d)
    path = plots.plot_embeddings_2d(torch.from_numpy(x).float(), torch.from_numpy(y), tmp_path / "e.png",
                                    centroids=centres, class_names=["a", "b", "c", "d"], title="t", max_points=100)
    _check_png(path, tmp_path / "e.png")


def test_embeddings_2d_many_classes_and_no_centroids(tmp_path):
    x, y, _ = _blobs(n=200, c=25)
    _check_png(plots.plot_embeddings_2d(x, y, tmp_path / "many.png"), tmp_path / "many.png")


def test_class_colors():
    assert len(set(plots.class_colors(10))) == 10
    assert plots.class_colors(3) == list(plots.COLORBLIND_10[:3])
    assert len(set(plots.class_colors(20))) == 20
    assert len(set(plots.class_colors(100))) == 100


def test_centroid_history(tmp_path):
    rng = np.random.default_rng(1)
    history = np.cumsum(rng.normal(size=(14, 3, 4)), axis=0)
    x, y, _ = _blobs(n=60, d=4, c=3)
    embeddings = [x + e if e % 2 else None for e in range(14)]
    path = plots.plot_centroid_history(torch.from_numpy(history), tmp_path / "h.png", embeddings_per_epoch=embeddings,
                                       labels_per_epoch=[y] * 14, class_names=["x", "y", "z"])
    _check_png(path, tmp_path / "h.png")
    _check_png(plots.plot_centroid_history(history[:1, :, :2], tmp_path / "one.png"), tmp_path / "one.png")


@pytest.mark.parametrize("dim", [2, 3])
def test_tsne(tmp_path, dim):
    x, y, _ = _blobs(n=200, d=8, c=3)
    path = plots.plot_tsne(x, y, tmp_path / "t.png", dim=dim, max_samples=45, class_names=["p", "q", "r"])
    _check_png(path, tmp_path / "t.png")


def test_angle_histograms(tmp_path):
    x, y, _ = _blobs(n=120, d=6)
    _check_png(plots.plot_angle_histograms(angular_separation(x, y), tmp_path / "a.png", title="softmax"),
               tmp_path / "a.png")
    # no positive pair: NaN statistics still draw
    _check_png(plots.plot_angle_histograms(angular_separation(x[:4], np.arange(4)), tmp_path / "b.png"),
               tmp_path / "b.png")


def test_training_curves_from_list_and_sparse_csv(tmp_path):
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 1 - 1 / (e + 1)} for e in range(1, 6)]
    _check_png(plots.plot_training_curves(history, tmp_path / "c.png"), tmp_path / "c.png")
    csv_path = tmp_path / "history.csv"
    with open(csv_path, "w", newline="") as handle:  # Lightning-style: train and val values on separate rows
        writer = csv.DictWriter(handle, fieldnames=["epoch", "step", "train_loss", "val_loss", "val_acc"])
        writer.writeheader()
        for e in range(1, 4):
            writer.writerow({"epoch": e, "step": e * 10, "train_loss": 1 / e, "val_loss": "", "val_acc": ""})
            writer.writerow({"epoch": e, "step": e * 10, "train_loss": "", "val_loss": 1.1 / e, "val_acc": 0.5 + e / 10})
    _check_png(plots.plot_training_curves(csv_path, tmp_path / "d.png"), tmp_path / "d.png")
    _check_png(plots.plot_training_curves([{"val_acc": 0.4}, {"val_acc": 0.6}], tmp_path / "f.png"), tmp_path / "f.png")


def test_bad_inputs_raise(tmp_path):
    x, y, centres = _blobs()
    with pytest.raises(ValueError):
        plots.plot_embeddings_2d(x[:, :1], y, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_embeddings_2d(x, y, tmp_path / "x.png", centroids=centres[:, :1])
    with pytest.raises(ValueError):
        plots.plot_embeddings_2d(x, y, tmp_path / "x.png", class_names=["only one"])
    with pytest.raises(ValueError):
        plots.plot_centroid_history(centres, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_tsne(x, y, tmp_path / "x.png", dim=4)
    with pytest.raises(ValueError):
        plots.plot_training_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
