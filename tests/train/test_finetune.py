"""Fine-tuning controls of FeatureModule, checked literally: during frozen epochs the trunk gets no gradient and
its weights and batch-norm statistics do not move while the neck and head train; the trunk's learning rate is
``backbone_lr_scale`` times the head's at every step of the schedule; ``freeze_batchnorm`` keeps batch-norm
statistics and affine parameters for the whole run."""

from __future__ import annotations

from unittest import mock

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from featspace import heads
from featspace.config import TrainConfig, load_recipe
from featspace.models import Backbone
from featspace.train.module import FeatureModule

STEPS = 3  # optimiser steps per epoch: 48 samples, batches of 16


def _backbone() -> Backbone:
    trunk = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten())
    return Backbone("test_trunk", trunk, in_channels=1, feature_dim=16, embedding_dim=6)


class Recorder(L.Callback):
    """Copies of the trunk's state after each epoch, the trunk's gradients the optimiser stepped with, the
    groups' learning rates at each step and the modes the trunk trained in."""

    def __init__(self) -> None:
        self.after_epoch: list[dict[str, torch.Tensor]] = []
        self.neck_after_epoch: list[torch.Tensor] = []
        self.grads: list[list[torch.Tensor | None]] = []
        self.lrs: list[list[float]] = []
        self.trunk_training: list[bool] = []
        self.bn_training: list[bool] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        # after the optimiser step (and the module's own hooks before it), before the next step zeroes them
        self.grads.append([None if p.grad is None else p.grad.clone() for p in module.trunk.parameters()])
        self.lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.trunk_training.append(module.trunk[0].training)
        self.bn_training.append(module.trunk[1].training)

    def on_train_epoch_end(self, trainer, module):
        self.after_epoch.append({k: v.clone() for k, v in module.trunk.state_dict().items()})
        self.neck_after_epoch.append(module.backbone.neck.weight.detach().clone())


def _fit(epochs: int = 2, drop_grads: bool = False, **fields):
    torch.manual_seed(0)
    images, labels = torch.randn(48, 1, 4, 4), torch.arange(48) % 3
    backbone = _backbone()
    initial = {k: v.clone() for k, v in backbone.trunk.state_dict().items()}
    initial["neck"] = backbone.neck.weight.detach().clone()
    config = TrainConfig(embedding_dim=6, max_epochs=epochs, batch_size=16, optimizer="adamw", weight_decay=0.1,
                         **fields)
    module = FeatureModule(backbone, heads.build("softmax", 6, 3), config, steps_per_epoch=STEPS)
    recorder = Recorder()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder])
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=False)
    if drop_grads:  # the DDP path on one process: the trunk runs with a graph, its gradients are dropped
        with mock.patch.object(FeatureModule, "on_fit_start", lambda self: setattr(self, "_drop_trunk_grads", True)):
            trainer.fit(module, loader)
    else:
        trainer.fit(module, loader)
    return module, initial, recorder


@pytest.mark.parametrize("drop_grads", [False, True], ids=["no_grad", "ddp_path"])
def test_frozen_epochs_leave_the_trunk_exactly_as_it_was(drop_grads):
    module, initial, seen = _fit(freeze_backbone_epochs=1, drop_grads=drop_grads)
    frozen_steps = seen.grads[:STEPS]
    assert all(g is None for step in frozen_steps for g in step)  # no gradient reached the optimiser
    for key, value in seen.after_epoch[0].items():  # weights, biases, BN running mean/var and its batch count
        assert torch.equal(value, initial[key]), key
    assert seen.trunk_training[:STEPS] == [False] * STEPS  # eval mode: dropout off, BN statistics fixed
    assert not torch.equal(seen.neck_after_epoch[0], initial["neck"])  # the neck trains with the head
    # epoch 2 thaws: gradients, moved weights and statistics, train mode
    assert all(g is not None for step in seen.grads[STEPS:] for g in step)
    assert seen.trunk_training[STEPS:] == [True] * STEPS
    assert not torch.equal(seen.after_epoch[1]["0.weight"], initial["0.weight"])
    assert not torch.equal(seen.after_epoch[1]["1.running_mean"], initial["1.running_mean"])


def test_backbone_lr_scale_is_the_ratio_of_the_groups_at_every_step_of_the_schedule():
    module, _, seen = _fit(epochs=2, backbone_lr_scale=0.1, schedule="cosine", warmup_epochs=1, lr=0.01)
    optimizer = module.optimizers().optimizer
    trunk_ids = {id(p) for p in module.trunk.parameters()}
    groups = optimizer.param_groups
    assert [(g["name"], len(g["params"])) for g in groups] == [("trunk", 4), ("neck", 2), ("head", 2)]
    assert all(id(p) in trunk_ids for p in groups[0]["params"])
    assert groups[0]["initial_lr"] == pytest.approx(0.001) and groups[1]["initial_lr"] == pytest.approx(0.01)
    assert len(seen.lrs) == 2 * STEPS and len({round(lrs[2], 12) for lrs in seen.lrs}) > 3  # warm-up, then cosine
    for trunk_lr, neck_lr, head_lr in seen.lrs:
        assert trunk_lr == pytest.approx(0.1 * head_lr, rel=1e-12) and neck_lr == head_lr
    single, _, _ = _fit(epochs=1)
    assert len(single.optimizers().optimizer.param_groups) == 2  # scale 1: backbone and head, as before


def test_freeze_batchnorm_keeps_statistics_and_affine_parameters_all_run():
    module, initial, seen = _fit(epochs=2, freeze_batchnorm=True)
    for key in ("1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"):  # BN
        assert torch.equal(seen.after_epoch[-1][key], initial[key]), key
    assert not torch.equal(seen.after_epoch[-1]["0.weight"], initial["0.weight"])  # the conv trains
    assert seen.bn_training == [False] * (2 * STEPS) and all(seen.trunk_training)
    in_optimizer = {id(p) for g in module.optimizers().optimizer.param_groups for p in g["params"]}
    assert id(module.trunk[1].weight) not in in_optimizer and id(module.trunk[0].weight) in in_optimizer


def test_nothing_to_train_is_a_clear_error():
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    config = TrainConfig(head="cosine", embedding_dim=None, max_epochs=1, freeze_backbone_epochs=1)
    module = FeatureModule(Backbone("t", trunk, 1, 4), heads.build("cosine", 4, 3), config, steps_per_epoch=1)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    loader = DataLoader(TensorDataset(torch.randn(8, 1, 4, 4), torch.arange(8) % 3), batch_size=4)
    with pytest.raises(ValueError, match="leaves nothing to train: head 'cosine' has no parameters"):
        trainer.fit(module, loader)


@pytest.mark.parametrize("override, match", [
    ("freeze_backbone_epochs=-1", "freeze_backbone_epochs must be an int >= 0"),
    ("freeze_backbone_epochs=1.5", "freeze_backbone_epochs must be an int"),
    ("backbone_lr_scale=0", r"backbone_lr_scale must lie in \(0, 10000\]"),
    ("backbone_lr_scale=1e5", r"backbone_lr_scale must lie in \(0, 10000\]"),
    ("backbone_lr_scale=abc", "backbone_lr_scale must be a finite real number"),
    ("freeze_batchnorm=maybe", "freeze_batchnorm must be a bool"),
    ("imports=mymodule", "imports must be a list of module names"),
    ("imports=['']", "imports must be a list of module names"),
])
def test_bad_fine_tuning_values_are_one_line_errors(override, match):
    with pytest.raises(ValueError, match=match):
        load_recipe("digits-demo", [override])


def test_the_new_fields_keep_existing_run_identities():
    from featspace.config import cell_hash

    base = TrainConfig()
    assert cell_hash(base) == cell_hash(TrainConfig(imports=["mymodule"]))  # a record, not a result
    assert cell_hash(base) != cell_hash(TrainConfig(backbone_lr_scale=0.1))


def test_the_fine_tuning_recipe():
    config = load_recipe("finetune-imagefolder")
    assert (config.dataset, config.backbone, config.backbone_params) == ("imagefolder", "timm:resnet50",
                                                                        {"pretrained": True})
    assert (config.optimizer, config.schedule, config.freeze_backbone_epochs) == ("adamw", "cosine", 1)
    assert config.backbone_lr_scale == 0.1 and config.data_dir is None
