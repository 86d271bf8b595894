"""DataModule and its loaders: batches, splits, reproducible shuffling and augmentation, workers, the
DistributedSampler Lightning substitutes under DDP, and an exact resume through a real Trainer."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from featspace import data
from featspace.data import DataModule, EpochShuffleSampler, InMemoryImages


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def cifar_like(n=40, classes=4, seed=0):
    """A tiny RGB bundle with the crop_flip policy, built without files."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % classes
    mean, std = data.channel_stats(images)
    return data.DatasetBundle("tiny", images, labels, images[:8].clone(), labels[:8].clone(), classes,
                              [f"c{i}" for i in range(classes)], mean, std, augment="crop_flip")


def epoch_batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))


def test_loaders_shapes_splits_and_normalization(digits):
    dm = DataModule(digits, batch_size=100, val_fraction=0.1, seed=0)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, (8, 8))
    assert dm.class_names == [str(i) for i in range(10)]
    assert len(dm.val_idx) == round(0.1 * 1438) and len(dm.train_idx) + len(dm.val_idx) == 1438
    assert not set(dm.val_idx.tolist()) & set(dm.train_idx.tolist())
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == len(dm.train_idx) // 100  # the partial last batch is dropped
    evals = epoch_batches(dm.train_eval_dataloader())
    assert sum(len(b[1]) for b in evals) == len(dm.train_idx)
    labels = torch.cat([b[1] for b in evals])
    assert torch.equal(labels, digits.train_labels[dm.train_idx])  # in order, not shuffled
    images = torch.cat([b[0] for b in evals])
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05
    val_labels = torch.cat([b[1] for b in dm.val_dataloader()])
    assert torch.equal(val_labels, digits.train_labels[dm.val_idx])
    test = epoch_batches(dm.test_dataloader())
    assert torch.equal(torch.cat([b[1] for b in test]), digits.test_labels)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.train_eval_dataloader()):
        assert type(loader).__mro__[1] is DataLoader or isinstance(loader, DataLoader)


def test_no_validation_split_gives_an_empty_loader(digits):
    dm = DataModule(digits, batch_size=64, val_fraction=0.0)
    assert len(dm.val_dataloader()) == 0 and len(dm.train_idx) == 1438


def test_shuffle_and_augmentation_fixed_by_seed_and_epoch():
    bundle = cifar_like()
    a, b = DataModule(bundle, batch_size=8, seed=1), DataModule(bundle, batch_size=8, seed=1)
    first_a, first_b = epoch_batches(a.train_dataloader()), epoch_batches(b.train_dataloader())
    assert same(first_a, first_b)
    a.set_epoch(1)
    second_a = epoch_batches(a.train_dataloader())
    assert not same(first_a, second_a)
    # a loop that never calls set_epoch still gets a new epoch per pass, the same as set_epoch(1)
    loader = DataModule(bundle, batch_size=8, seed=1).train_dataloader()
    assert same(epoch_batches(loader), first_a) and same(epoch_batches(loader), second_a)
    # a "resumed" module that jumps straight to epoch 1 sees what the uninterrupted one saw
    c = DataModule(bundle, batch_size=8, seed=1)
    c.set_epoch(1)
    assert same(epoch_batches(c.train_dataloader()), second_a)
    assert not same(epoch_batches(DataModule(bundle, batch_size=8, seed=2).train_dataloader()), first_a)


def test_augmentation_only_on_training_and_only_when_asked():
    bundle = cifar_like()
    plain = DataModule(bundle, batch_size=8, augment=False)
    augmented = DataModule(bundle, batch_size=8, augment=True)
    assert plain.train_set.augment == "none" and augmented.train_set.augment == "crop_flip"
    assert augmented.val_set.augment == augmented.test_set.augment == augmented.train_eval_set.augment == "none"
    # same order (same seed), different pixels; the labels are untouched
    for (x0, y0), (x1, y1) in zip(plain.train_dataloader(), augmented.train_dataloader()):
        assert torch.equal(y0, y1) and not torch.equal(x0, x1)


def test_worker_processes_give_the_same_batches():
    bundle = cifar_like(n=48)
    single = DataModule(bundle, batch_size=8, seed=3)
    pooled = DataModule(bundle, batch_size=8, seed=3, num_workers=1)
    loader_single, loader_pooled = single.train_dataloader(), pooled.train_dataloader()
    for epoch in (0, 1):
        loader_single.sampler.set_epoch(epoch)
        loader_pooled.sampler.set_epoch(epoch)
        assert same(epoch_batches(loader_single), epoch_batches(loader_pooled))  # persistent worker follows


def test_ddp_substitution_keeps_per_sample_augmentation():
    """What Lightning does under DDP: re-create our loader with a DistributedSampler per rank. Every
    sample must come out augmented exactly as in the single-process loader of the same epoch."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
    from lightning.pytorch.utilities.data import _is_dataloader_shuffled, _update_dataloader

    bundle = cifar_like(n=40)
    dm = DataModule(bundle, batch_size=4, seed=5, val_fraction=0.0, drop_last=False)
    with _replace_dunder_methods(DataLoader, "dataset"):
        loader = dm.train_dataloader()
    assert _is_dataloader_shuffled(loader)
    reference = InMemoryImages(bundle.train_images, bundle.train_labels, bundle.mean, bundle.std,
                               augment="crop_flip", seed=5)
    epoch = 3
    reference.set_epoch(epoch)
    seen = []
    for rank in range(2):
        sampler = _get_distributed_sampler(loader, shuffle=True, overfit_batches=0, num_replicas=2, rank=rank, seed=0)
        ddp_loader = _update_dataloader(loader, sampler)
        assert type(ddp_loader) is type(loader)
        sampler.set_epoch(epoch)
        order = list(iter(sampler))
        images = torch.cat([x for x, _ in ddp_loader])
        expected, _ = reference.__getitems__(order)
        assert torch.equal(images, expected)
        seen += order
    assert sorted(seen) == list(range(40))


def test_sampler_is_a_random_sampler_with_set_epoch():
    dataset = InMemoryImages(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.zeros(10, dtype=torch.int64),
                             (0.0,), (1.0,))
    sampler = EpochShuffleSampler(dataset, seed=0)
    sampler.set_epoch(4)
    order = list(sampler)
    assert sorted(order) == list(range(10)) and dataset.epoch == 4
    sampler.set_epoch(4)
    assert list(sampler) == order


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="batch_size"):
        DataModule(digits, batch_size=0)
    with pytest.raises(ValueError, match="fraction"):
        DataModule(digits, batch_size=8, val_fraction=1.5)
    with pytest.raises(ValueError, match="policy"):
        InMemoryImages(digits.train_images, digits.train_labels, (0.0,), (1.0,), augment="mixup")


@pytest.mark.slow
def test_trainer_resume_sees_the_batches_of_an_uninterrupted_run(tmp_path):
    """Two epochs, a checkpoint, a third epoch in a new process-like Trainer: the third epoch's batches and
    the final weights equal those of a three-epoch run."""
    import lightning as L

    bundle = cifar_like(n=64)

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(3 * 8 * 8, 4)
            self.seen = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.seen.append((self.current_epoch, x.sum().item(), y.tolist()))
            return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def trainer(epochs):
        return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=tmp_path)

    full = Recorder()
    trainer(3).fit(full, datamodule=DataModule(bundle, batch_size=8, seed=11))
    first = Recorder()
    interrupted = trainer(2)
    interrupted.fit(first, datamodule=DataModule(bundle, batch_size=8, seed=11))
    interrupted.save_checkpoint(tmp_path / "epoch2.ckpt")
    resumed = Recorder()
    trainer(3).fit(resumed, datamodule=DataModule(bundle, batch_size=8, seed=11), ckpt_path=tmp_path / "epoch2.ckpt")
    assert [s for s in full.seen if s[0] == 2] == resumed.seen
    assert len(resumed.seen) == 7 and {s[0] for s in full.seen} == {0, 1, 2}
    assert [s[1:] for s in full.seen if s[0] == 1] != [s[1:] for s in full.seen if s[0] == 2]  # epochs differ
    assert torch.equal(full.layer.weight, resumed.layer.weight)
