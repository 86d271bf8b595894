"""`featspace export`: a run trained on an image folder whose files are then deleted, exported in every format
from its run directory alone, each file run (onnxruntime, torch.jit.load, torch.export.load) against
`featspace predict` and the eager model; and the one-line errors."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from featspace.cli import main
from featspace.config import load_recipe
from featspace.io import read_json
from featspace.train import export as export_module
from featspace.train import load_run, train
from featspace.train.export import FORMATS, load_exported, sidecar_path

CLASSES = ("ant", "bee", "cat")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}


def _write_images(folder: Path, count: int, k: int, seed: int, size: tuple[int, int] = (32, 32)) -> list[Path]:
    """RGB noise around a class-dependent colour, so one epoch learns something."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        colour = np.array([60 + 70 * k, 200 - 60 * k, 40 + 50 * (k % 2)])
        pixels = np.clip(colour + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i}.png")
        Image.fromarray(pixels, mode="RGB").save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 1-epoch run on a 32x32 image folder, whose training data is deleted before the tests use it."""
    root = tmp_path_factory.mktemp("export")
    data_dir = root / "data"
    for k, name in enumerate(CLASSES):
        _write_images(data_dir / "train" / name, 8, k, seed=k)
        _write_images(data_dir / "test" / name, 3, k, seed=10 + k)
    config = load_recipe("digits-demo", {"dataset": "imagefolder", "data_dir": str(data_dir), "max_epochs": 1,
                                         "batch_size": 8, "tsne": False, "embedding_dim": 8, "head": "arcface"})
    path = train(config, run_dir=root / "run", progress=False).path
    shutil.rmtree(data_dir)
    return path


@pytest.fixture
def no_dataset(monkeypatch):
    from featspace import data

    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("exporting must not load the dataset"))


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.slow
def test_every_format_scores_and_embeds_as_featspace_predict_and_embed_from_the_run_directory_alone(run_dir, tmp_path, capsys,
                                                                               no_dataset):
    queries = [*_write_images(tmp_path / "queries", 4, 0, seed=20, size=(40, 24)),  # resized to 32x32 on reading
               *_write_images(tmp_path / "queries" / "more", 3, 2, seed=21)]
    predictions = tmp_path / "predictions.csv"
    assert main(["predict", str(run_dir), str(tmp_path / "queries"), "--out", str(predictions),
                 "--top-k", str(len(CLASSES)), "--no-progress"]) == 0
    rows = list(csv.DictReader(predictions.open()))
    model = load_run(run_dir)
    paths = [Path(r["path"]) for r in rows]
    assert sorted(paths) == sorted(queries)
    pixels = torch.stack([model.read(p) for p in paths])
    images = pixels.float() / 255.0  # the exported models' input: [0, 1], normalised inside
    predicted = torch.tensor([[float(r[f"top{i}_score"]) for i in range(1, 4)] for r in rows])
    predicted_classes = [[CLASSES.index(r[f"top{i}"]) for i in range(1, 4)] for r in rows]
    npz = tmp_path / "embedded.npz"  # `featspace embed` from the run directory alone, too
    assert main(["embed", str(run_dir), str(tmp_path / "queries"), "--out", str(npz), "--no-progress"]) == 0
    with np.load(npz) as embedded:
        by_path = dict(zip(embedded["paths"].tolist(), embedded["embeddings"]))
    embed_rows = torch.tensor(np.stack([by_path[str(p)] for p in paths]))
    capsys.readouterr()
    for format in FORMATS:
        out = tmp_path / "exports" / f"model{SUFFIX[format]}"
        assert main(["export", str(run_dir), "--format", format, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert f"wrote {out}" in printed and "check:" in printed and "max abs difference" in printed
        scores, embeddings = load_exported(out, format)(images)
        if format == "onnx":  # onnxruntime against the CSV of `featspace predict`
            from_csv = torch.gather(scores, 1, torch.tensor(predicted_classes))
            torch.testing.assert_close(from_csv, predicted, rtol=1e-5, atol=1e-5)
            assert scores.argmax(1).tolist() == [CLASSES.index(r["predicted"]) for r in rows]
        torch.testing.assert_close(scores, model.predict(pixels), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(embeddings, model.embed(pixels), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(embeddings, embed_rows, rtol=1e-5, atol=1e-5)
        single, _ = load_exported(out, format)(images[:1])  # any batch size
        torch.testing.assert_close(single, scores[:1], rtol=1e-5, atol=1e-5)
        info = read_json(sidecar_path(out))
        assert info["format"] == format and info["class_names"] == list(CLASSES)
        assert info["input"]["shape"] == ["batch", 3, 32, 32] and info["input"]["range"] == [0.0, 1.0]
        assert info["normalization"]["mean"] == list(model.mean) and info["normalization"]["std"] == list(model.std)
        assert [o["name"] for o in info["outputs"]] == ["scores", "embeddings"]
        assert info["outputs"][1]["shape"] == ["batch", 8]
        assert max(info["check"]["max_abs_diff"].values()) < 1e-4
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == sorted(
        name for format in FORMATS for name in (f"model{SUFFIX[format]}", f"model{SUFFIX[format]}.json"))


def test_a_failed_check_writes_nothing_and_no_check_skips_it(run_dir, tmp_path, capsys, monkeypatch, no_dataset):
    out = tmp_path / "model.pt"
    monkeypatch.setattr(export_module, "CHECK_TOLERANCE", -1.0)
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(out)]) == 2
    assert "differs from the eager model" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(out), "--no-check"]) == 0
    assert "check:   skipped (--no-check)" in capsys.readouterr().out
    assert out.is_file() and read_json(sidecar_path(out))["check"] is None


def test_bad_inputs_get_one_line_errors(run_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    for name in ("config.yaml", "model.json"):
        shutil.copy(run_dir / name, weightless / name)
    cases = [
        ([str(run_dir), "--format", "tflite"], "unknown export format 'tflite'; choose one of onnx, torchscript"),
        ([str(run_dir), "--out", str(blocker / "model.onnx")], "cannot write --out"),
        ([str(run_dir), "--out", str(tmp_path)], "is a directory"),
        ([str(run_dir), "--format", "exported-program", "--out", str(tmp_path / "m.onnx")], ".pt2"),
        ([str(weightless), "--out", str(tmp_path / "w.onnx")], "no checkpoint at"),
        ([str(tmp_path / "nowhere"), "--out", str(tmp_path / "n.onnx")], "not a featspace run directory"),
    ]
    for argv, message in cases:
        assert main(["export", *argv]) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert line.startswith("featspace export: error: ") and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "weightless"]
