"""A finished run used for inference: load_run without the training data, and `featspace predict`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from featspace.cli import main
from featspace.config import load_recipe
from featspace.rundir import RunDir
from featspace.train import load_run, train


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    config = load_recipe("digits-demo", {"max_epochs": 2, "tsne": False, "embedding_dim": 8, "head": "arcface"})
    return train(config, run_dir=root / "run", progress=False).path


def _write_test_images(folder: Path, count: int) -> tuple[list[Path], np.ndarray]:
    """The first test images of the digits as 8x8 grey PNGs, and their labels."""
    from PIL import Image

    from featspace import data

    bundle = data.load("digits")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:03d}.png"
        Image.fromarray(bundle.test_images[i, 0].numpy(), mode="L").save(path)
        paths.append(path)
    return paths, bundle.test_labels[:count].numpy()


def test_load_run_predicts_as_the_evaluation_did_without_the_training_data(digits_run, monkeypatch):
    from featspace import data

    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("load_run must not load the dataset"))
    model = load_run(digits_run)
    assert model.class_names == [str(i) for i in range(10)] and model.image_size == (8, 8)
    saved = RunDir(digits_run).read_embeddings()
    monkeypatch.undo()
    bundle = data.load("digits")
    scores = model.predict(bundle.test_images)
    torch.testing.assert_close(scores, torch.from_numpy(saved["test_scores"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.embed(bundle.test_images), torch.from_numpy(saved["test_embeddings"]),
                               rtol=1e-5, atol=1e-5)


def test_predict_writes_a_row_per_image_and_skips_unreadable_files(digits_run, tmp_path, capsys):
    paths, labels = _write_test_images(tmp_path / "images" / "nested", 12)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(digits_run), str(tmp_path / "images"), "--out", str(out), "--top-k", "3",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.png" in captured.err
    assert "predicted 12 image(s)" in captured.out and "1 skipped" in captured.out
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["path"]).name for r in rows] == [p.name for p in paths]
    assert set(rows[0]) == {"path", "predicted", "score", "top1", "top2", "top3", "top1_score", "top2_score",
                            "top3_score"}
    saved = RunDir(digits_run).read_embeddings()
    expected = saved["test_scores"][:12].argmax(1)
    assert [int(r["predicted"]) for r in rows] == expected.tolist()  # the same as the evaluation's predictions
    assert all(r["predicted"] == r["top1"] and float(r["top1_score"]) >= float(r["top2_score"]) for r in rows)
    assert (np.array([int(r["predicted"]) for r in rows]) == labels).mean() > 0.5
