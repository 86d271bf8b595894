"""last.ckpt is the last epoch even when that epoch did not improve the validation loss (best.ckpt keeps the
best one): ``--resume`` and ``featspace eval`` read last.ckpt."""

from __future__ import annotations

import shutil

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from featspace.train.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from featspace.train.fit import checkpoint_callbacks


class _WorseEachEpoch(L.LightningModule):
    """A linear model whose logged validation loss grows with the epoch (``sign=-1``: falls, every epoch is
    the best so far)."""

    def __init__(self, sign: float = 1.0) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.sign = sign

    def training_step(self, batch, batch_idx):
        x, y = batch
        return (self.layer(x).squeeze(1) - y).square().mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.sign * float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, *, with_val: bool, epochs: int = 3, sign: float = 1.0, ckpt_path=None):
    data = TensorDataset(torch.randn(8, 2), torch.randn(8))
    last, best = checkpoint_callbacks(tmp_path / "checkpoints", with_val)
    order = [best, last]  # as the trainer lists them
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[c for c in order if c is not None], plugins=[AtomicCheckpointIO()],
                        limit_val_batches=1.0 if with_val else 0)
    model = _WorseEachEpoch(sign)
    loader = DataLoader(data, batch_size=4)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader if with_val else None, ckpt_path=ckpt_path,
                weights_only=True)
    return model, trainer


def test_last_checkpoint_is_the_final_epoch_when_validation_got_worse(tmp_path):
    model, trainer = _fit(tmp_path, with_val=True)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, trainer.global_step)
    assert best["epoch"] == 0
    for name, tensor in model.state_dict().items():  # the weights training ended with
        assert torch.equal(last["state_dict"][name], tensor), name
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_without_validation_only_last_checkpoint_is_written(tmp_path):
    _, trainer = _fit(tmp_path, with_val=False)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, trainer.global_step)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]


def test_last_checkpoint_carries_this_epochs_best_score_for_resume(tmp_path):
    """Every epoch improves: the best-checkpoint state saved inside last.ckpt must already know the final
    epoch's score, else a resumed run compares against an older best and may overwrite best.ckpt."""
    _, trainer = _fit(tmp_path, with_val=True, sign=-1.0)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    states = [v for k, v in last["callbacks"].items() if "val_loss" in k]
    assert len(states) == 1 and float(states[0]["best_model_score"]) == -2.0


def test_a_moved_run_directory_keeps_its_best_checkpoint_on_resume(tmp_path):
    """Issue 17, item 1: the validation loss worsens every epoch, so epoch 0 stays the best. The run directory
    is moved before resuming; Lightning's own callback would drop the best score (the saved dirpath differs)
    and let the resumed epoch overwrite best.ckpt."""
    _fit(tmp_path / "before", with_val=True, epochs=3)
    shutil.move(tmp_path / "before", tmp_path / "after")
    _, trainer = _fit(tmp_path / "after", with_val=True, epochs=5,
                      ckpt_path=tmp_path / "after" / "checkpoints" / "last.ckpt")
    best = load_checkpoint(tmp_path / "after" / "checkpoints" / "best.ckpt")
    assert best["epoch"] == 0
    callback = trainer.checkpoint_callbacks[0]
    assert float(callback.best_model_score) == 0.0
    assert callback.best_model_path == str(tmp_path / "after" / "checkpoints" / "best.ckpt")


def test_a_full_disk_during_a_checkpoint_is_one_line_and_a_failed_run(tmp_path, monkeypatch, capsys):
    """Issue 17, item 7: torch reports a full disk as "PytorchStreamWriter failed writing file"; the command
    says what and where in one line, exits 2, leaves no partial checkpoint, and the run is "failed"."""
    from featspace.cli import main
    from featspace.rundir import RunIndex
    from featspace.train import checkpoint_io

    def full_disk(obj, path):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(checkpoint_io.torch, "save", full_disk)
    code = main(["train", "digits-demo", "--epochs", "1", "--run-dir", str(tmp_path / "run"), "--no-progress",
                 "--no-plots", "--set", "embedding_dim=8"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [f"featspace train: error: no space left on the device to write the checkpoint: "
                                f"{tmp_path / 'run' / 'checkpoints'}/{err.rsplit('/', 1)[-1]}"]
    assert RunIndex(tmp_path).get("run").status == "failed"
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))  # the temporary file was removed
