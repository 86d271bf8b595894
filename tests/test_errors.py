"""Errors a user meets are one line with status 2, never a traceback (issue 17, item 13): broken run indexes,
unusable directories and checkpoints, hardware the machine lacks, decompression bombs."""

from __future__ import annotations

import pickle
import sqlite3

import pytest
import torch

from featspace.cli import main
from featspace.config import TrainConfig
from featspace.rundir import RunDir


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("broken", ["random", "truncated", "schema"])
def test_a_broken_run_index_is_one_line(tmp_path, capsys, broken):
    index = tmp_path / "index.sqlite"
    if broken == "random":
        index.write_bytes(bytes(range(256)) * 8)
    elif broken == "truncated":
        db = sqlite3.connect(index)
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [(str(i) * 100,) for i in range(200)])
        db.commit()
        db.close()
        index.write_bytes(index.read_bytes()[:3000])
    else:
        db = sqlite3.connect(index)
        db.execute("CREATE TABLE runs (id TEXT)")
        db.commit()
        db.close()
    for argv in (["list", "runs", "--root", str(tmp_path)],
                 ["bench", "icv-fashion", "--dry-run", "--root", str(tmp_path)]):
        assert "run index" in _one_line(capsys, main(argv))


def test_a_run_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _one_line(capsys, main(["train", "digits-demo", "--run-dir", str(tmp_path / "file"), "--no-progress"]))


def test_gpu_without_cuda_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = _one_line(capsys, main(["train", "digits-demo", "--accelerator", "gpu", "--run-dir",
                                  str(tmp_path / "run"), "--no-progress"]))
    assert "needs CUDA" in err


def _run_with_checkpoint(tmp_path, payload: bytes | None = None, *, config_head: str = "softmax") -> RunDir:
    from featspace.train import build_parts
    from featspace.train.module import FeatureModule

    rundir = RunDir(tmp_path / "run")
    rundir.claim(TrainConfig(head=config_head, embedding_dim=8))
    rundir.checkpoints.mkdir()
    if payload is None:  # real weights of another head than the config names
        config = TrainConfig(head="icv", embedding_dim=8)
        _, backbone, head = build_parts(config)
        torch.save({"state_dict": FeatureModule(backbone, head, config, 1).state_dict()}, rundir.last_checkpoint)
    else:
        rundir.last_checkpoint.write_bytes(payload)
    return rundir


class _Payload:
    def __reduce__(self):
        return (print, ("this would have run",))


@pytest.mark.parametrize("payload, message", [
    (b"", "is empty"),
    (bytes(range(256)) * 4, "is not a featspace checkpoint"),
    (b"PK\x03\x04" + bytes(100), "is not a readable torch checkpoint"),
    (pickle.dumps(_Payload()), "(random bytes, another format, or code), so it was not loaded"),
    (None, "does not fit the run's config.yaml"),
])
def test_unusable_checkpoints_are_one_line(tmp_path, capsys, payload, message):
    rundir = _run_with_checkpoint(tmp_path, payload)
    err = _one_line(capsys, main(["eval", str(rundir.path), "--no-plots"]))
    assert message in err and "weights_only=False" not in err


def test_an_image_decompression_bomb_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from tests.data import formats

    formats.write_imagefolder(tmp_path, "train", {"a": 2, "b": 2})
    formats.write_imagefolder(tmp_path, "test", {"a": 1, "b": 1})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 20x12 images are then "bombs" (> 2x the limit)
    err = _one_line(capsys, main(["train", "digits-demo", "--dataset", "imagefolder", "--data-dir", str(tmp_path),
                                  "--run-dir", str(tmp_path / "run"), "--no-progress"]))
    assert "decompression bomb" in err and ".png" in err


@pytest.mark.parametrize("recipe_text, message", [
    ("head: [unclosed\n", "cannot read"),
    ("head: !!python/object/apply:os.system [echo hi]\n", "cannot read"),
    (None, "directory"),
])
def test_bad_recipe_files_are_one_line(tmp_path, capsys, recipe_text, message):
    path = tmp_path / "mine.yaml"
    if recipe_text is None:
        path.mkdir()
    else:
        path.write_text(recipe_text, encoding="utf-8")
    err = _one_line(capsys, main(["train", str(path), "--run-dir", str(tmp_path / "run"), "--no-progress"]))
    assert message in err


def test_an_unwritable_runs_root_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only root (the tests run as root, which ignores file modes, so the refusal is simulated where the
    run directory is created) and a root below a file."""
    (tmp_path / "file").write_text("x")
    err = _one_line(capsys, main(["train", "digits-demo", "--root", str(tmp_path / "file" / "runs"),
                                  "--no-progress"]))
    assert "Not a directory" in err

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr("pathlib.Path.mkdir", refuse)
    err = _one_line(capsys, main(["train", "digits-demo", "--root", str(tmp_path / "ro"), "--no-progress"]))
    assert "Permission denied" in err and str(tmp_path / "ro") in err
