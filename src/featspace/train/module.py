"""The LightningModule that joins a backbone and a head: a loop you can read top to bottom.

images [B, C, H, W] ──backbone (trunk ─► neck)──► embeddings [B, d] ──head──► HeadOutput(loss, logits, parts)

Lightning supplies devices, DDP, mixed precision, checkpoint/resume, early stopping, progress bars and
loggers; this module only says what one step is and how the optimiser and schedule are built.

Fine-tuning acts on the *trunk* (``Backbone.trunk``: the network, pretrained or not; a plain ``nn.Module``
backbone is all trunk). The neck, a new linear layer, belongs with the head: it trains in frozen epochs and at
the head's learning rate, since a frozen or slowed random projection would only hold the head back.

- ``freeze_backbone_epochs = k``: in epochs 1..k the trunk is in eval mode (batch-norm statistics and dropout
  fixed) and gets no gradient, so its weights and buffers stay exactly as they were. On one process it runs
  under ``torch.no_grad`` (no backward through it at all); under DDP, whose reducer expects a gradient for every
  parameter, it runs as usual and its gradients are dropped before the optimiser step. Either way an optimiser
  never sees a gradient for it, so Adam's moments and SGD's momentum start when it thaws, and AdamW's decoupled
  weight decay leaves it alone. Which epochs are frozen depends on the epoch number alone, so a run resumed from
  an epoch checkpoint is frozen and thawed exactly as an uninterrupted one.
- ``backbone_lr_scale = s``: the trunk is its own parameter group with learning rate ``s·lr``; the LambdaLR
  schedule multiplies every group's initial rate by the same factor, so the ratio holds at every step
  (frozen epochs count as steps of the schedule).
- ``freeze_batchnorm``: the trunk's batch-norm layers stay in eval mode for the whole run, their affine
  parameters out of the optimiser (running statistics as loaded; the usual choice for small fine-tuning batches).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from featspace.config import TrainConfig
from featspace.heads.base import Head, HeadOutput
from featspace.models import Backbone

__all__ = ["EpochSums", "FeatureModule", "lr_factor"]


class EpochSums:
    """Batch-size-weighted sums of a stage's scalar step values over one epoch, kept on the device.

    ``add({"loss": t, "acc": t, ...}, batch_size)`` per step (one stacked in-place add, no host sync);
    ``means(strategy)`` reduces the sums and the sample count over the processes in one call and returns the
    means — the same values as Lightning's ``on_epoch=True, sync_dist=True`` weighted by ``batch_size``, exactly
    (not a mean of per-process means)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sums: Tensor | None = None
        self.count = 0

    def add(self, values: dict[str, Tensor], batch_size: int) -> None:
        stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()]) * batch_size
        if self.sums is None:
            self.names, self.sums = list(values), stacked
        elif list(values) != self.names:
            raise ValueError(f"a step reported {list(values)} after {self.names}; a head's parts must not change")
        else:
            self.sums += stacked
        self.count += batch_size

    def means(self, strategy: Any) -> dict[str, Tensor]:
        totals = torch.cat([self.sums, self.sums.new_tensor([float(self.count)])])
        totals = strategy.reduce(totals, reduce_op="sum")
        return dict(zip(self.names, totals[:-1] / totals[-1]))


def lr_factor(step: int, *, config: TrainConfig, steps_per_epoch: int, total_steps: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): linear warm-up, then the schedule.

    Milestones count epochs, or optimiser steps when ``config.max_steps`` is set (HASeparator's
    recipe decays at iterations 32k and 48k). Cosine anneals to 0 over the steps after warm-up.
    """
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if config.schedule == "multistep":
        position = step if config.max_steps else step // max(steps_per_epoch, 1)
        return config.gamma ** sum(1 for m in config.milestones if position >= m)
    if config.schedule == "cosine":
        span = max(total_steps - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


class FeatureModule(L.LightningModule):
    """Backbone + head, trained on the head's loss; logs loss, accuracy and every loss part."""

    def __init__(self, backbone: nn.Module, head: Head, config: TrainConfig, steps_per_epoch: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        # centroids at the end of every epoch, for the centroids-per-epoch figure (001 Figs. 6-7): the ones
        # the head learns or fixes, or, for a head without any (softmax, the paper's cross-entropy rows of
        # Fig. 7), the class means of the epoch's training embeddings, summed over the steps and processes
        self.centroid_history: list[Tensor] = []
        self.centroid_source = "learned" if head.learned_centroids() is not None else "class_means"
        self._class_sums: Tensor | None = None    # [C, d] float32, this epoch, this process
        self._class_counts: Tensor | None = None  # [C]
        self._epoch_sums = {"train": EpochSums(), "val": EpochSums()}
        self._compiled: Any = None  # torch.compile(self._forward), made at the first step (config.compile)
        if config.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        # fine-tuning (module docstring): the trunk, and what the optimiser may train of it
        if config.freeze_batchnorm:
            for layer in self._batchnorms():
                layer.requires_grad_(False)
        # parameters the caller left trainable, taken before any freezing: the optimiser's trunk group
        self._trunk_params = [p for p in self.trunk.parameters() if p.requires_grad]
        self._drop_trunk_grads = False  # True under DDP: run the frozen trunk as usual, drop its gradients

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    # --------------------------------------------------------------------------------- fine-tuning
    @property
    def trunk(self) -> nn.Module:
        """The backbone's trunk (a plain ``nn.Module`` backbone is all trunk); a view, not a submodule of its own."""
        return self.backbone.trunk if isinstance(self.backbone, Backbone) else self.backbone

    def _batchnorms(self) -> list[nn.Module]:
        # looked up each time: Lightning's sync_batchnorm swaps the layers (keeping their parameters)
        return [m for m in self.trunk.modules() if isinstance(m, _BatchNorm)]

    def trunk_frozen(self, epoch: int | None = None) -> bool:
        """Whether the trunk is frozen in ``epoch`` (1-based; default the current one)."""
        epoch = self.current_epoch + 1 if epoch is None else epoch
        return epoch <= self.config.freeze_backbone_epochs

    def on_fit_start(self) -> None:
        self._drop_trunk_grads = self.trainer.world_size > 1
        if self.config.freeze_backbone_epochs:
            in_trunk = {id(p) for p in self.trunk.parameters()}
            if not any(p.requires_grad and id(p) not in in_trunk for p in self.parameters()):
                raise ValueError(f"freeze_backbone_epochs={self.config.freeze_backbone_epochs} leaves nothing to "
                                 f"train: head {self.config.head!r} has no parameters and there is no neck (set "
                                 "embedding_dim to add one, or freeze_backbone_epochs=0)")

    def _set_trunk_modes(self) -> None:
        """Eval mode for what is frozen this epoch (the trunk, or its batch-norm layers); train mode otherwise."""
        if self.config.freeze_backbone_epochs:
            self.trunk.train(not self.trunk_frozen())
        if self.config.freeze_batchnorm:
            for layer in self._batchnorms():
                layer.eval()

    def _embed(self, images: Tensor) -> Tensor:
        """Embeddings for a training step: through a frozen trunk without a graph on one process."""
        if not (self.trunk_frozen() and self.training) or self._drop_trunk_grads:
            return self.backbone(images)
        with torch.no_grad():
            if not isinstance(self.backbone, Backbone):
                return self.backbone(images)
            features = self.backbone.features(images)
        return self.backbone.neck(features)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._drop_trunk_grads and self.trunk_frozen():
            for p in self._trunk_params:
                p.grad = None

    # ------------------------------------------------------------------------------------- steps
    def on_train_epoch_start(self) -> None:
        # Re-seed from (seed, epoch): dropout and augmentation then depend on the epoch alone, so a run
        # resumed from an epoch checkpoint draws the same numbers as an uninterrupted one.
        epoch = self.current_epoch + 1
        torch.manual_seed(self.config.seed * 100_003 + epoch)
        self._set_trunk_modes()
        self.head.start_epoch(epoch)
        self._epoch_sums["train"] = EpochSums()

    def on_validation_epoch_start(self) -> None:
        self._epoch_sums["val"] = EpochSums()

    def _forward(self, images: Tensor, labels: Tensor, train: bool) -> tuple[Tensor, HeadOutput]:
        """The step's forward: embeddings [B, d] and the head's output. What ``compile: true`` compiles."""
        embeddings = self._embed(images) if train else self.backbone(images)
        return embeddings, self.head(embeddings, labels)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        images, labels = batch
        if self.config.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.config.compile and self._compiled is None:
            # the bound method, not the modules: the state dict keeps its keys (no ``_orig_mod.`` prefix), so
            # checkpoints of compiled and eager runs are interchangeable; the heads skip their input checks
            # while compiling and ``center`` updates its centroids outside the graph
            self._compiled = torch.compile(self._forward)
        forward = self._compiled if self.config.compile else self._forward
        embeddings, out = forward(images, labels, stage == "train")
        if stage == "train" and self.centroid_source == "class_means":
            # in the head's feature space, where learned centroids live (x/‖x‖ for the "Norm." rows)
            with torch.no_grad():
                self._accumulate_class_sums(self.head.feature_space(embeddings.detach()), labels)
        with torch.no_grad():
            accuracy = (out.logits.argmax(1) == labels).float().mean()
            values = {"loss": out.loss, "acc": accuracy, **out.parts}
            self._epoch_sums[stage].add(values, labels.shape[0])
        if stage == "train" and (self.trainer.global_step + 1) % self.trainer.log_every_n_steps == 0:
            # the step curves, on the steps Lightning hands to the loggers only: each self.log call costs
            # ~1.5 ms of bookkeeping (a torchmetrics forward), ~15% of a small model's step if made every step
            self.log_dict({"train_loss_step": out.loss.detach(), "train_acc_step": accuracy}, on_step=True,
                          on_epoch=False, prog_bar=True, batch_size=labels.shape[0])
        if stage == "train" and self._last_batch_of_epoch():
            self._log_epoch("train")
        return out.loss

    def _last_batch_of_epoch(self) -> bool:
        """Whether this training step ends the epoch: its last batch, or the step that reaches max_steps."""
        trainer = self.trainer
        loop = trainer.fit_loop.epoch_loop
        last_batch = loop.batch_progress.current.ready >= trainer.num_training_batches
        return last_batch or (trainer.max_steps > 0 and trainer.global_step + 1 >= trainer.max_steps)

    def _log_epoch(self, stage: str) -> None:
        """Log the epoch means of a stage's step values, over every process's samples.

        The sums are kept on the device and reduced once per epoch (one all-reduce under DDP) instead of
        through Lightning's per-step ``self.log(..., on_epoch=True, sync_dist=True)``. The training means are
        logged from the epoch's last step, so the callbacks that read them in ``on_train_epoch_end`` (the
        history, before the checkpoints) see this epoch's values."""
        means = self._epoch_sums[stage].means(self.trainer.strategy)
        for name, value in means.items():
            self.log(f"{stage}_{name}", value, on_step=False, on_epoch=True, prog_bar=name in ("loss", "acc"),
                     sync_dist=False)  # already reduced over the processes

    def on_validation_epoch_end(self) -> None:
        if self._epoch_sums["val"].count:
            self._log_epoch("val")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def predict_step(self, batch: Tensor | tuple[Tensor, ...] | list[Tensor], batch_idx: int,
                     dataloader_idx: int = 0) -> dict[str, Tensor]:
        """``trainer.predict``: for images [B, C, H, W] (normalised as the training loader gives them), or an
        (images, labels, ...) batch, the ``embeddings`` [B, d] and the head's ``scores`` [B, C] (its ``predict``,
        whose argmax is the class; no labels needed), in float32."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        embeddings = self.backbone(images)
        return {"embeddings": embeddings.float(), "scores": self.head.predict(embeddings).float()}

    def _accumulate_class_sums(self, embeddings: Tensor, labels: Tensor) -> None:
        """Add a batch's feature-space embeddings [B, d'] to the per-class sums of the epoch (float32)."""
        if self._class_sums is None:
            self._class_sums = embeddings.new_zeros(self.head.num_classes, embeddings.shape[1], dtype=torch.float32)
            self._class_counts = embeddings.new_zeros(self.head.num_classes, dtype=torch.float32)
        labels = labels.long()
        self._class_sums.index_add_(0, labels, embeddings.float())
        self._class_counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float32))

    def on_train_epoch_end(self) -> None:
        if self.centroid_source == "learned":
            centroids = self.head.learned_centroids()
            self.centroid_history.append(centroids.detach().float().cpu().clone())
        elif self._class_sums is not None:
            # sums over every process's samples (identity on one process), then the means; a class absent
            # from the whole epoch keeps the origin rather than a NaN
            sums = self.trainer.strategy.reduce(self._class_sums, reduce_op="sum")
            counts = self.trainer.strategy.reduce(self._class_counts, reduce_op="sum")
            self.centroid_history.append((sums / counts.clamp_min(1.0)[:, None]).cpu().clone())
            self._class_sums = self._class_counts = None

    # ------------------------------------------------------------------------- optimiser, schedule
    def configure_optimizers(self) -> dict[str, Any]:
        config = self.config
        head_decay = config.weight_decay if config.head_weight_decay else 0.0
        trunk = [p for p in self._trunk_params if p.requires_grad]
        in_trunk = {id(p) for p in self.trunk.parameters()}
        rest = [p for p in self.backbone.parameters() if p.requires_grad and id(p) not in in_trunk]  # the neck
        # named groups (history.csv reads the head's and the trunk's rates by name)
        if config.backbone_lr_scale == 1.0:  # one backbone group, as before the scale existed (older checkpoints)
            backbone_groups = [{"name": "backbone", "params": trunk + rest, "weight_decay": config.weight_decay}]
        else:
            backbone_groups = [{"name": "trunk", "params": trunk, "weight_decay": config.weight_decay,
                                "lr": config.lr * config.backbone_lr_scale},
                               {"name": "neck", "params": rest, "weight_decay": config.weight_decay}]
        groups = [
            *backbone_groups,
            {"name": "head", "params": [p for p in self.head.parameters() if p.requires_grad],
             "weight_decay": head_decay},
        ]
        groups = [g for g in groups if g["params"]]
        if config.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
        elif config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=config.lr)
        else:
            optimizer = torch.optim.Adam(groups, lr=config.lr)
        total_steps = config.max_steps or config.max_epochs * self.steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, config=config, steps_per_epoch=self.steps_per_epoch, total_steps=total_steps),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------ checkpointing
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.centroid_history:
            checkpoint["centroid_history"] = torch.stack(self.centroid_history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        history = checkpoint.get("centroid_history")
        self.centroid_history = list(history.unbind(0)) if history is not None else []
