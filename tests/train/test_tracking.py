"""Experiment tracking through Lightning's loggers (``loggers`` in the config), read back from TensorBoard's event
files; Weights & Biases and MLflow through stand-ins at Lightning's logger interface (they are optional extras);
and ``FeatureModule.predict_step`` under ``trainer.predict``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch import loggers as pl_loggers
from lightning.pytorch.loggers.logger import Logger

from featspace.config import TrainConfig, cell_hash, load_recipe
from featspace.rundir import RunDir, RunIndex
from featspace.train import load_trained, train
from featspace.train.tracking import hyperparameters


class RecordingLogger(Logger):
    """Stands in for WandbLogger / MLFlowLogger: what Lightning and featspace give a logger, recorded."""

    made: list[RecordingLogger] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.hparams: list[dict[str, Any]] = []
        self.metrics: list[tuple[dict[str, float], int | None]] = []
        self.finalized: list[str] = []
        RecordingLogger.made.append(self)

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.hparams.append(dict(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def finalize(self, status: str) -> None:
        self.finalized.append(status)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One epoch on the digits with every logger: TensorBoard and CSV for real, W&B and MLflow stood in for."""
    root = tmp_path_factory.mktemp("runs")
    real_find_spec = importlib.util.find_spec
    with pytest.MonkeyPatch.context() as patch:
        RecordingLogger.made = []
        patch.setattr(pl_loggers, "WandbLogger", lambda **kw: RecordingLogger(kind="wandb", **kw))
        patch.setattr(pl_loggers, "MLFlowLogger", lambda **kw: RecordingLogger(kind="mlflow", **kw))
        patch.setattr(importlib.util, "find_spec",
                      lambda name, *a: object() if name in ("wandb", "mlflow") else real_find_spec(name, *a))
        config = load_recipe("digits-demo", {"max_epochs": 1, "tsne": False, "embedding_dim": 8,
                                             "loggers": ["csv", "tensorboard", "wandb", "mlflow"]})
        result = train(config, run_dir=root / "run", progress=False)
        return result, list(RecordingLogger.made)


def _events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = (run / "tensorboard").iterdir()
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


@pytest.mark.slow
def test_tensorboard_holds_the_hyperparameters_learning_rate_and_final_metrics(tracked_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    result, _ = tracked_run
    events = _events(result.path)
    scalars = events.Tags()["scalars"]
    final = events.Scalars("final/accuracy")
    assert len(final) == 1 and final[0].value == pytest.approx(result.metrics["accuracy"], rel=1e-6)
    assert final[0].step == result.metrics["steps"]
    assert {f"final/{k}" for k in ("ncc_accuracy", "silhouette", "d_em", "epochs")} <= set(scalars)
    lr = [tag for tag in scalars if tag.startswith("lr-Adam")]
    assert lr and events.Scalars(lr[0])[0].value == pytest.approx(0.003)
    assert "train_loss_step" in scalars and "val_loss" in scalars
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    logged = {k: v.string_value or v.number_value for k, v in start.session_start_info.hparams.items()}
    assert logged["head"] == "softmax" and logged["lr"] == pytest.approx(0.003) and logged["max_epochs"] == 1
    assert logged["loggers"] == '["csv", "tensorboard", "wandb", "mlflow"]'
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "final/accuracy" in {m.name.tag for m in experiment.metric_infos}


@pytest.mark.slow
def test_csv_logs_and_every_other_logger_get_the_same_run(tracked_run):
    result, made = tracked_run
    assert (result.path / "logs" / "version_0" / "metrics.csv").is_file()
    assert [m.kwargs["kind"] for m in made] == ["wandb", "mlflow"]
    wandb, mlflow = made
    assert wandb.kwargs["name"] == result.run_id and wandb.kwargs["project"] == "featspace"
    assert mlflow.kwargs["run_name"] == result.run_id and mlflow.kwargs["experiment_name"] == "featspace"
    assert mlflow.kwargs["tracking_uri"] == f"sqlite:///{(result.path.parent / 'mlflow.db').resolve()}"
    for logger in made:
        assert logger.hparams[0] == hyperparameters(RunDir(result.path).read_config())
        assert any("lr-Adam" in "".join(m) for m, _ in logger.metrics)
        final, step = logger.metrics[-1]
        assert final["final/accuracy"] == pytest.approx(result.metrics["accuracy"]) and step == result.metrics["steps"]
        assert logger.finalized[-1] == "success"


def test_a_missing_tracker_is_one_line_before_any_directory_is_claimed(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
    with pytest.raises(ValueError, match=r"loggers: wandb needs the wandb package, which is not installed: "
                                         r"pip install 'featspace\[wandb\]'"):
        train(TrainConfig(loggers=["csv", "wandb"]), run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() and RunIndex(tmp_path).query() == []


def test_the_loggers_field_is_checked_and_leaves_the_run_identity_alone():
    assert TrainConfig().loggers == ["csv", "tensorboard"]
    assert cell_hash(TrainConfig(loggers=["wandb"])) == cell_hash(TrainConfig())
    for bad, message in [(["neptune"], "must be one of"), ("csv", "must be a list"), (["csv", "csv"], "twice")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(loggers=bad).validate()
    assert hyperparameters(TrainConfig(head_params={"lam": 0.5}, milestones=[3, 6]))["head_params.lam"] == 0.5
    assert hyperparameters(TrainConfig(milestones=[3, 6]))["milestones"] == "[3, 6]"


@pytest.mark.slow
def test_trainer_predict_returns_the_scores_and_embeddings_of_the_evaluation(tracked_run):
    result, _ = tracked_run
    module, datamodule, _ = load_trained(result.path)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    batches = trainer.predict(module, datamodule.test_dataloader())
    embeddings = torch.cat([b["embeddings"] for b in batches])
    scores = torch.cat([b["scores"] for b in batches])
    saved = RunDir(result.path).read_embeddings()
    torch.testing.assert_close(embeddings, torch.from_numpy(saved["test_embeddings"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores, torch.from_numpy(saved["test_scores"]), rtol=1e-5, atol=1e-5)
    images, _ = next(iter(datamodule.test_dataloader()))
    only_images = module.predict_step(images[:3], 0)  # a batch without labels
    assert only_images["scores"].shape == (3, 10) and only_images["embeddings"].shape == (3, 8)


@pytest.mark.slow
def test_wandb_offline_and_mlflow_for_real_where_they_are_installed(tmp_path, monkeypatch):
    """The optional extras themselves (`make test` installs them): W&B in offline mode, MLflow in a SQLite store."""
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_recipe("digits-demo", {"max_epochs": 1, "tsne": False, "embedding_dim": 8,
                                         "loggers": ["wandb", "mlflow"]})
    result = train(config, run_dir=tmp_path / "run", progress=False)
    (offline,) = (result.path / "wandb").glob("offline-run-*/*.wandb")
    assert offline.stat().st_size > 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("featspace").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["head"] == "softmax" and run.data.params["max_epochs"] == "1"
    assert run.data.metrics["final/accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert any(key.startswith("lr-Adam") for key in run.data.metrics)
