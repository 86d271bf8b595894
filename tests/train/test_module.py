"""FeatureModule's per-epoch centroid history (the centroids-per-epoch figure, 001 Figs. 6-7)."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from featspace import heads
from featspace.config import TrainConfig
from featspace.train.module import FeatureModule


def _fit(head_name: str, epochs: int = 2, **hparams):  # -> (module, class means of the raw embeddings [3, 2])
    """Two epochs on 60 fixed points through a frozen linear backbone: the embeddings never change."""
    torch.manual_seed(0)
    images = torch.randn(60, 1, 2, 3)
    labels = torch.arange(60) % 3
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    backbone.requires_grad_(False)
    head = heads.build(head_name, 2, 3, **hparams)
    config = TrainConfig(head=head_name, embedding_dim=2, max_epochs=epochs, batch_size=16)
    module = FeatureModule(backbone, head, config, steps_per_epoch=4)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=False)
    trainer.fit(module, loader)
    with torch.no_grad():
        embeddings = backbone(images)
    means = torch.stack([embeddings[labels == k].mean(0) for k in range(3)])
    return module, means


def test_heads_without_centroids_record_the_class_means_of_each_epoch():
    module, means = _fit("softmax")
    assert module.centroid_source == "class_means" and len(module.centroid_history) == 2
    for epoch_means in module.centroid_history:  # every sample counted once per epoch, whatever the batch split
        torch.testing.assert_close(epoch_means, means)


def test_icv_cross_entropy_rows_plot_class_means_not_untrained_centroids():
    module, means = _fit("icv", lam=0.0)
    assert module.centroid_source == "class_means"
    torch.testing.assert_close(module.centroid_history[-1], means)
    learned, _ = _fit("icv", lam=1.0)
    assert learned.centroid_source == "learned"
    torch.testing.assert_close(learned.centroid_history[-1], learned.head.centroids.detach())


def test_normalised_cross_entropy_rows_average_unit_embeddings():
    """The "Norm." rows compare x/‖x‖: their class means are means of unit vectors, as the learned centroids are."""
    module, _ = _fit("icv", lam=0.0, normalize=True)
    torch.manual_seed(0)
    images, labels = torch.randn(60, 1, 2, 3), torch.arange(60) % 3
    with torch.no_grad():
        unit = nn.functional.normalize(module.backbone(images), dim=1)
    expected = torch.stack([unit[labels == k].mean(0) for k in range(3)])
    torch.testing.assert_close(module.centroid_history[-1], expected)


class _Recorder(L.Callback):
    """What the history callback sees: the epoch metrics at ``on_train_epoch_end``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.rows.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def test_epoch_means_are_batch_size_weighted_and_seen_by_callbacks_even_when_max_steps_ends_an_epoch():
    """The epoch loss is the mean over samples (batches of 16, 16, 16, 12), computed from the module's own sums,
    and reaches a callback's on_train_epoch_end — also for the partial epoch that max_steps cuts short."""
    torch.manual_seed(0)
    images, labels = torch.randn(60, 1, 2, 3), torch.arange(60) % 3
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    backbone.requires_grad_(False)
    head = heads.build("softmax", 2, 3)
    config = TrainConfig(embedding_dim=2, max_epochs=1, batch_size=16)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=False)
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(head(backbone(images), labels).logits, labels, reduction="none")
    for max_steps, expected in ((-1, losses.mean()), (6, losses[:32].mean())):
        module = FeatureModule(backbone, head, config, steps_per_epoch=4)
        module.configure_optimizers = lambda: torch.optim.SGD(head.parameters(), lr=0.0)  # nothing changes
        recorder = _Recorder()
        trainer = L.Trainer(max_epochs=2, max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[recorder])
        trainer.fit(module, loader)
        assert len(recorder.rows) == 2 and all("train_loss" in row and "train_acc" in row for row in recorder.rows)
        torch.testing.assert_close(torch.tensor(recorder.rows[-1]["train_loss"]), expected)


def test_channels_last_and_compile_give_the_eager_step():
    """``channels_last`` and ``compile`` change how a step runs, not what it computes: same loss as eager, and the
    state dict keeps its keys (checkpoints of either kind load into the other)."""
    from featspace import models

    torch.manual_seed(0)
    images, labels = torch.randn(16, 1, 8, 8), torch.arange(16) % 4
    losses, keys = [], []
    for extra in ({}, {"channels_last": True}, {"compile": True}):
        torch.manual_seed(0)
        backbone = models.build_backbone("small_cnn", in_channels=1, embedding_dim=8)
        head = heads.build("softmax", 8, 4)
        config = TrainConfig(embedding_dim=8, max_epochs=1, **extra)
        module = FeatureModule(backbone, head, config, steps_per_epoch=1)
        module.eval()
        if extra.get("compile"):
            module._compiled = torch.compile(module._forward, backend="aot_eager")  # the step's forward, fast to build
        forward = module._compiled if config.compile else module._forward
        batch = images.contiguous(memory_format=torch.channels_last) if config.channels_last else images
        _, out = forward(batch, labels, False)
        losses.append(out.loss.detach())
        keys.append(sorted(module.state_dict()))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses[2], losses[0], rtol=1e-5, atol=1e-6)
    assert keys[0] == keys[1] == keys[2]
