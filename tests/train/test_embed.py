"""`featspace embed`: embeddings of image files, class folders and a run's own splits, as .npz and as a
TensorBoard projector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featspace.cli import main
from featspace.config import load_recipe
from featspace.rundir import RunDir
from featspace.train import train


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    config = load_recipe("digits-demo", {"max_epochs": 1, "tsne": False, "embedding_dim": 8, "loggers": []})
    return train(config, run_dir=root / "run", progress=False).path


def _class_folders(folder: Path, count: int) -> list[Path]:
    """The first test digits as PNGs in one folder per class (named as the run's classes)."""
    from PIL import Image

    from featspace import data

    bundle = data.load("digits")
    paths = []
    for i in range(count):
        target = folder / str(int(bundle.test_labels[i])) / f"{i:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(bundle.test_images[i, 0].numpy(), mode="L").save(target)
        paths.append(target)
    return paths


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return {k: arrays[k] for k in arrays.files}


def _projector(folder: Path):
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    return text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())


@pytest.mark.slow
def test_class_folders_give_labels_and_an_unreadable_file_is_skipped(digits_run, tmp_path, capsys):
    paths = _class_folders(tmp_path / "test", 15)
    (paths[1].parent / "broken.png").write_bytes(b"not a png")
    loose = tmp_path / "loose"
    loose.mkdir()
    paths[0].rename(loose / "000.png")  # no class folders: label unknown
    out = tmp_path / "out" / "embedded.npz"
    assert main(["embed", str(digits_run), str(tmp_path / "test"), str(loose), "--out", str(out),
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.png" in captured.err
    assert "embedded 15 image(s)" in captured.out and "labels known for 14" in captured.out
    arrays = _npz(out)
    assert set(arrays) == {"embeddings", "scores", "labels", "paths", "class_names"}
    names = [Path(p).name for p in arrays["paths"]]
    order = sorted(range(1, 15), key=lambda i: (Path(arrays["paths"][names.index(f"{i:03d}.png")]).parent.name, i))
    assert names == [f"{i:03d}.png" for i in order] + ["000.png"]
    saved = RunDir(digits_run).read_embeddings()  # the evaluation's embeddings of the same test images
    np.testing.assert_allclose(arrays["embeddings"], saved["test_embeddings"][order + [0]], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(arrays["scores"], saved["test_scores"][order + [0]], rtol=1e-5, atol=1e-5)
    assert arrays["labels"].tolist() == saved["test_labels"][order].tolist() + [-1]
    assert arrays["class_names"].tolist() == [str(i) for i in range(10)]


@pytest.mark.slow
def test_a_split_embeds_as_the_evaluation_did_and_writes_a_projector(digits_run, tmp_path, capsys):
    out, board = tmp_path / "test.npz", tmp_path / "board"
    assert main(["embed", str(digits_run), "--split", "test", "--out", str(out), "--tensorboard", str(board),
                 "--no-progress"]) == 0
    arrays, saved = _npz(out), RunDir(digits_run).read_embeddings()
    np.testing.assert_allclose(arrays["embeddings"], saved["test_embeddings"], rtol=1e-5, atol=1e-5)
    assert (arrays["labels"] == saved["test_labels"]).all() and arrays["paths"][2] == "digits:test/2"
    (entry,) = _projector(board).embeddings
    assert entry.tensor_name.startswith("run") and list(entry.sprite.single_image_dim) == [8, 8]
    tensors = (board / entry.tensor_path).read_text().splitlines()
    assert len(tensors) == len(arrays["labels"]) and len(tensors[0].split("\t")) == 8
    metadata = (board / entry.metadata_path).read_text().splitlines()
    assert metadata[0] == "label\tpredicted\tpath" and len(metadata) == len(tensors) + 1
    assert metadata[3].split("\t") == [str(arrays["labels"][2]), str(arrays["scores"][2].argmax()), "digits:test/2"]
    assert (board / entry.sprite.image_path).is_file()

    train_out = tmp_path / "train.npz"  # the training split less its validation hold-out, into the same projector
    assert main(["embed", str(digits_run), "--split", "train", "--out", str(train_out), "--no-progress"]) == 0
    from featspace.train import load_trained

    _, datamodule, _ = load_trained(digits_run)
    train_arrays = _npz(train_out)
    assert train_arrays["labels"].tolist() == datamodule.bundle.train_labels[datamodule.train_idx].tolist()


def test_projectors_of_several_runs_share_a_folder(tmp_path):
    import torch

    from featspace.train.embedding import Embedded, write_projector

    def embedded(n):
        return Embedded(torch.randn(n, 3), torch.tensor([[1.0, 0.0]] * n), torch.tensor([0, -1] * (n // 2)),
                        [f"img\t{i}\n.png" for i in range(n)], ["cat", "dog"], torch.zeros(n, 1, 4, 4, dtype=torch.uint8))

    write_projector(tmp_path, embedded(4), tag="first")
    write_projector(tmp_path, embedded(6), tag="second")
    write_projector(tmp_path, embedded(2), tag="first")  # embedded again: replaced, not listed twice
    entries = {e.tensor_name: e for e in _projector(tmp_path).embeddings}
    assert sorted(entries) == ["first:00000", "second:00000"]
    rows = (tmp_path / entries["first:00000"].metadata_path).read_text().splitlines()
    assert rows[1:] == ["cat\tcat\timg 0 .png", "?\tcat\timg 1 .png"]  # tabs and newlines of a path: spaces


@pytest.mark.slow
def test_embed_errors_are_one_line(digits_run, tmp_path, monkeypatch, capsys):
    from featspace import data

    for argv, message in [([], "give image files or folders, or --split"),
                          ([str(tmp_path / "nothing")], "no image or folder at"),
                          (["--split", "test", "--batch-size", "0"], "--batch-size must be at least 1")]:
        assert main(["embed", str(digits_run), *argv, "--out", str(tmp_path / "x.npz")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err

    def missing(*args, **kwargs):
        raise data.DatasetNotFoundError("digits files not found in /nowhere; get them with --download")

    monkeypatch.setattr(data, "load", missing)
    assert main(["embed", str(digits_run), "--split", "train", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("featspace embed: error: --split train needs the run's dataset: digits files not found in "
                   "/nowhere; get them with --download")
    assert not (tmp_path / "x.npz").exists()
