"""Backbones end to end on a small image folder the test writes: timm:resnet18, a torchvision model, a local
weights file and a backbone registered in a module passed by --import each train an epoch, are stopped, resume
with ``featspace train --resume`` and re-evaluate with ``featspace eval``; a ready nn.Module trains through the
Python API; a run whose backbone is not registered says which --import it needs."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from featspace import models
from featspace.cli import main
from featspace.rundir import RunDir, RunIndex
from featspace.train import fit as fitting
from featspace.train import load_recipe, train
from featspace.train.checkpoint_io import load_checkpoint

CLASSES = ("ant", "bee", "cat", "dog")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """train/ (8 per class), val/ (2) and test/ (2) folders of PNG and JPEG images of mixed sizes and aspect
    ratios (24-48 px a side, brought to 32 px by the streaming pipeline): 48 in all, each a class colour plus
    noise."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 2), ("test", 2)):
        for k, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                colour = np.array([60 * k, 255 - 60 * k, 120], dtype=np.float64)
                height, width = (int(v) for v in rng.integers(24, 49, size=2))
                pixels = np.clip(colour + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
                suffix = "jpg" if i % 2 else "png"
                Image.fromarray(pixels, mode="RGB").save(root / split / name / f"{i}.{suffix}")
    return root


def _fast(folder: Path) -> list[str]:
    return ["--dataset", "imagefolder", "--data-dir", str(folder), "--batch-size", "16", "--embedding-dim", "8",
            "--set", "tsne=false", "--set", "image_size=32", "--set", "augment=false", "--no-progress", "--no-plots"]


class StopAfterFirstEpoch(L.Callback):
    """Ends the fit at the start of epoch 2, when epoch 1's checkpoint is on disk (a kill, in-process)."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("stopped after epoch 1")


def _train_stop_resume_eval(folder: Path, run: Path, train_args: list[str], later_args: list[str] = (),
                            before_resume=None) -> dict:
    """Train 2 epochs stopped after the first, resume, evaluate; returns the metrics of the resumed run."""
    with mock.patch.object(fitting, "_pause_callbacks", lambda: [StopAfterFirstEpoch()]), \
            pytest.raises(RuntimeError, match="stopped after epoch 1"):
        main(["train", *train_args, *_fast(folder), "--epochs", "2", "--run-dir", str(run)])
    assert RunDir(run).last_checkpoint.is_file() and RunDir(run).read_metrics() is None
    assert load_checkpoint(RunDir(run).last_checkpoint)["epoch"] == 0
    if before_resume is not None:
        before_resume()
    assert main(["train", "--resume", str(run), "--no-progress", "--no-plots", *later_args]) == 0
    trained = RunDir(run).read_metrics()
    assert trained["epochs"] == 2 and RunIndex(run.parent).get(run.name).status == "finished"
    assert main(["eval", str(run), "--no-plots", *later_args]) == 0
    again = RunDir(run).read_metrics()
    assert again["accuracy"] == pytest.approx(trained["accuracy"]) and again["silhouette"] == pytest.approx(
        trained["silhouette"], rel=1e-5, abs=1e-6)
    return trained


@pytest.mark.slow
def test_timm_resnet18_fine_tuned_across_a_resume(folder, tmp_path):
    """The trunk is frozen in epoch 1 and thaws in epoch 2, which the resumed process runs."""
    run = tmp_path / "timm"
    _train_stop_resume_eval(folder, run, ["--backbone", "timm:resnet18", "--set", "freeze_backbone_epochs=1",
                                          "--set", "backbone_lr_scale=0.1", "--set", "optimizer=adamw",
                                          "--set", "schedule=cosine"])
    config = RunDir(run).read_config()
    assert config.backbone == "timm:resnet18" and config.freeze_backbone_epochs == 1
    state = load_checkpoint(RunDir(run).last_checkpoint)
    groups = state["optimizer_states"][0]["param_groups"]
    assert [g["name"] for g in groups] == ["trunk", "neck", "head"]
    assert groups[0]["initial_lr"] == pytest.approx(0.1 * groups[2]["initial_lr"])
    from featspace.train.history import read_history

    rows = read_history(RunDir(run).history)
    assert len(rows) == 2 and all(float(r["backbone_lr"]) == pytest.approx(0.1 * float(r["lr"])) for r in rows)


@pytest.mark.slow
def test_torchvision_mobilenet(folder, tmp_path):
    run = tmp_path / "tv"
    _train_stop_resume_eval(folder, run, ["--backbone", "torchvision:mobilenet_v3_small"])
    assert RunDir(run).read_config().backbone == "torchvision:mobilenet_v3_small"


@pytest.mark.slow
def test_a_local_weights_file_frozen_as_a_linear_probe(folder, tmp_path):
    """small_cnn from a weights file, frozen for both epochs: its trunk in the final checkpoint is the file's.
    The file is deleted before --resume and eval, which read the run's checkpoint, never the file again."""
    torch.manual_seed(5)
    source = models.build_backbone("small_cnn", in_channels=3, embedding_dim=8).trunk.state_dict()
    weights = tmp_path / "small_cnn.pth"
    torch.save({"state_dict": source}, weights)
    run = tmp_path / "weights"
    _train_stop_resume_eval(folder, run, ["--set", f"backbone_params.weights={weights}",
                                          "--set", "freeze_backbone_epochs=2"], before_resume=weights.unlink)
    final = load_checkpoint(RunDir(run).last_checkpoint)["state_dict"]
    for key, tensor in source.items():
        assert torch.equal(final[f"backbone.trunk.{key}"], tensor), key


MODULE = '''
from torch import nn

from featspace.models import Backbone, register_backbone


@register_backbone("test_tiny_net", description="conv-BN-ReLU, pooled; a user's backbone")
def tiny_net(in_channels, embedding_dim, width: int = 8):
    trunk = nn.Sequential(nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone("test_tiny_net", trunk, in_channels, width, embedding_dim)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """tmp_path/my_backbones.py registering test_tiny_net; tmp_path on sys.path; both undone afterwards."""
    path = tmp_path / "my_backbones.py"
    path.write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))

    def forget():
        if "test_tiny_net" in models.names():
            models.backbones.BACKBONES.unregister("test_tiny_net")
        sys.modules.pop("my_backbones", None)

    yield path, forget
    forget()


@pytest.mark.slow
def test_a_backbone_registered_by_an_imported_module(folder, tmp_path, user_module, capsys):
    path, forget = user_module
    run = tmp_path / "mine"
    # trained with the file's path; a new process (here: the module forgotten) must be told which --import
    _train_stop_resume_eval(folder, run, ["--backbone", "test_tiny_net", "--import", str(path)],
                            later_args=["--import", "my_backbones"], before_resume=forget)
    assert RunDir(run).read_config().imports == [str(path)]
    forget()
    capsys.readouterr()
    for argv in (["eval", str(run)], ["train", "--resume", str(run)],
                 ["predict", str(run), str(folder / "test"), "--out", str(tmp_path / "p.csv")],
                 ["train", *_fast(folder), "--backbone", "test_tiny_net", "--root", str(tmp_path / "fresh")],
                 ["train", *_fast(folder), "--backbone", "timm:resnet_50", "--root", str(tmp_path / "fresh")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        if "timm:resnet_50" in argv:
            assert "unknown timm model 'resnet_50'; did you mean resnet50" in err
        elif argv[0] == "train" and "--resume" not in argv:
            assert "backbone 'test_tiny_net'" in err and "register it in a module" in err and "--import" in err
        else:
            assert f"pass --import {path} to this command" in err, err
    assert not (tmp_path / "fresh").exists()  # refused before a run directory was claimed
    assert main(["predict", str(run), str(folder / "test"), "--out", str(tmp_path / "p.csv"),
                 "--import", str(path)]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 2 * len(CLASSES)
    assert main(["bench", "heads-fashion", "--dry-run", "--import", "my_backbones"]) == 0
    assert main(["eval", str(run), "--import", "no_such_module_here"]) == 2
    assert "no module named 'no_such_module_here'" in capsys.readouterr().err


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images):
        return self.body(images)


@pytest.mark.slow
def test_a_ready_module_through_the_python_api(folder, tmp_path, capsys, monkeypatch):
    config = load_recipe(None, {"dataset": "imagefolder", "data_dir": str(folder), "max_epochs": 1, "batch_size": 8,
                                "embedding_dim": 4, "tsne": False, "val_fraction": 0.0})
    result = train(config, run_dir=tmp_path / "ready", backbone=TinyNet(), progress=False)
    saved = RunDir(result.path).read_config()
    assert saved.backbone == "module:TinyNet" and saved.embedding_dim == 4
    weights = load_checkpoint(RunDir(result.path).last_checkpoint)["state_dict"]
    assert weights["backbone.neck.weight"].shape == (4, 6)  # width 6 found by a dry forward, then the neck
    assert main(["eval", str(result.path)]) == 2
    err = capsys.readouterr().err
    assert "was a ready nn.Module" in err and "register_backbone('module:TinyNet')" in err and "--import" in err
    factory = tmp_path / "tiny_factory.py"
    factory.write_text(
        "from featspace.models import register_backbone, wrap_module\n"
        f"from {__name__} import TinyNet\n\n\n"
        "@register_backbone('module:TinyNet')\n"
        "def tiny(in_channels, embedding_dim):\n"
        "    return wrap_module(TinyNet(), in_channels=in_channels, embedding_dim=embedding_dim)\n")
    try:
        assert main(["eval", str(result.path), "--no-plots", "--import", str(factory)]) == 0
        assert RunDir(result.path).read_metrics()["accuracy"] == pytest.approx(result.metrics["accuracy"])
    finally:
        models.backbones.BACKBONES.unregister("module:TinyNet")
        sys.modules.pop("tiny_factory", None)
    with pytest.raises(ValueError, match="trained with backbone 'module:TinyNet', not 'module:Sequential'"):
        train(resume=result.path, backbone=nn.Sequential())
