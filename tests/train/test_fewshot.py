"""evaluate_fewshot on a run directory of the CPU-sized digits split; the fewshot command; Lightning training with the
episodic sampler."""

from __future__ import annotations

import argparse

import pytest
import torch
import yaml

import featspace.data
from featspace.commands import fewshot
from featspace.config import TrainConfig
from featspace.data import episodic_loader
from featspace.data.fewshot_splits import load_bundle, load_split, split_for_dataset
from featspace.io import read_json, write_json
from featspace.metrics.fewshot import evaluate_episodes, sample_episodes
from featspace.train import build_parts
from featspace.train.evaluate import extract, image_batches
from featspace.train.fewshot import evaluate_fewshot as evaluate_run
from featspace.train.module import FeatureModule


@pytest.fixture
def fewshot_datasets(monkeypatch):
    """Route ``featspace.data.load("fewshot_<split>")`` to the split's base classes, as the data registry's
    few-shot entries do (harmless where the registry already has them)."""
    original = featspace.data.load

    def load(name, **kwargs):
        if split_for_dataset(name):
            return load_bundle(name, data_dir=kwargs.get("data_dir"))
        return original(name, **kwargs)

    monkeypatch.setattr(featspace.data, "load", load)


def _make_run(tmp_path, head="softmax", train_steps=0):
    config = TrainConfig(dataset="fewshot_digits", backbone="small_cnn", embedding_dim=16, head=head, seed=0,
                         backbone_params={"widths": [8, 16, 16], "hidden": 32})
    _, backbone, head_module = build_parts(config)
    module = FeatureModule(backbone, head_module, config, steps_per_epoch=1)
    run_dir = tmp_path / "run-1"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    torch.save({"state_dict": module.state_dict()}, run_dir / "checkpoints" / "last.ckpt")
    write_json(run_dir / "metrics.json", {"accuracy": 0.5})
    return run_dir, module


def test_evaluate_run_writes_fewshot_json_and_matches_the_episodes(tmp_path, fewshot_datasets):
    run_dir, module = _make_run(tmp_path)
    report = evaluate_run(run_dir, shots=(1, 5), episodes=100, methods=("ncc", "laplacianshot"), norm="cl2n",
                          device="cpu")
    assert report["split"] == "digits" and report["novel_classes"] == ["5", "6", "7", "8", "9"]
    assert set(report["results"]) == {"ncc", "laplacianshot"} and set(report["results"]["ncc"]) == {"1", "5"}
    assert set(report["discriminant"]) == {"total", "classifier", "complement"}
    saved = read_json(run_dir / "fewshot.json")
    assert saved["results"]["ncc"]["5"]["mean"] == pytest.approx(report["results"]["ncc"]["5"]["mean"])
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["accuracy"] == 0.5 and metrics["fewshot_ncc_1shot"] == pytest.approx(
        report["results"]["ncc"]["1"]["mean"]) and "fewshot_laplacianshot_5shot_ci95" in metrics
    # the same numbers from the features directly: the run's backbone, the split's novel images, CL2N
    split = load_split("digits")
    module.eval()
    features = extract(module.backbone, None, image_batches(split.test.images, split.test.labels, split.mean,
                                                            split.std)).embeddings
    base_mean = extract(module.backbone, None, image_batches(split.train.images, split.train.labels, split.mean,
                                                             split.std)).embeddings.mean(0)
    indices = sample_episodes(split.test.labels, episodes=100, shots=5, seed=5)
    direct = evaluate_episodes(features, indices=indices, norm="cl2n", base_mean=base_mean)
    assert report["results"]["ncc"]["5"]["mean"] == pytest.approx(direct.mean, abs=1e-6)
    assert 0.2 < direct.mean <= 1.0


def test_evaluate_run_refuses_a_run_without_a_fewshot_split(tmp_path, fewshot_datasets):
    run_dir, _ = _make_run(tmp_path)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["dataset"] = "digits"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="not on a few-shot split"):
        evaluate_run(run_dir, episodes=10)
    with pytest.raises(ValueError, match="valid"):
        evaluate_run(run_dir, episodes=10, split="digits", norm="zca")


def test_fewshot_command_prints_mean_and_ci(tmp_path, fewshot_datasets, capsys):
    run_dir, _ = _make_run(tmp_path)
    parser = argparse.ArgumentParser(prog="featspace")
    fewshot.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fewshot", str(run_dir), "--shots", "1", "--episodes", "30", "--method", "both",
                              "--norm", "l2", "--no-write"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "5-way 1-shot (%)" in out and "laplacianshot" in out and "±" in out and "discriminant" in out
    assert not (run_dir / "fewshot.json").exists()


@pytest.mark.slow
def test_lightning_trains_on_episodic_batches(fewshot_datasets):
    """Two epochs of Lightning on the digits base classes with 5-way 8-shot batches: Lightning keeps the
    sampler (no substitution), sets its epoch every epoch, and every step sees N·K samples of N classes."""
    import lightning as L


    bundle = load_bundle("fewshot_digits")
    config = TrainConfig(dataset="fewshot_digits", backbone="small_cnn", embedding_dim=16, head="softmax",
                         max_epochs=2, backbone_params={"widths": [8, 16, 16], "hidden": 32})
    datamodule, backbone, head = build_parts(config)
    dataset = datamodule.train_set
    labels = bundle.train_labels[dataset.indices]
    loader = episodic_loader(dataset, labels, ways=5, shots=8, episodes_per_epoch=3, seed=1,
                             loader_class=type(datamodule.train_dataloader()),
                             collate_fn=datamodule.train_dataloader().collate_fn)
    seen: list[tuple[int, int]] = []

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((trainer.current_epoch, batch[1].unique().numel()))
            assert batch[0].shape[0] == 40

    module = FeatureModule(backbone, head, config, steps_per_epoch=len(loader))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Recorder()])
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.train_dataloader.sampler is loader.sampler
    assert loader.sampler.epoch == 1 and len(seen) == 6 and all(n == 5 for _, n in seen)
    assert int(dataset._shared_epoch) == 1  # the augmentation epoch reached the dataset (and its workers)
