"""translearn.callbacks.EarlyStopping: patience counts checks, and no patience stop before min_steps."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from translearn.callbacks import EarlyStopping


class Scripted(pl.LightningModule):
    """3 training steps per epoch; validation logs ``values[epoch]`` as ``val/score``."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.values = values

    def training_step(self, batch, batch_idx):
        return (self.weight - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/score", self.values[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(3, 1)), batch_size=1)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)


def epochs_run(values: list[float], **kwargs) -> int:
    stop = EarlyStopping(monitor="val/score", mode="max", **kwargs)
    trainer = pl.Trainer(max_epochs=len(values), callbacks=[stop], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Scripted(values))
    return trainer.current_epoch


def test_patience_alone_stops_after_patience_flat_checks():
    # epoch 0 is the best; epochs 1 and 2 do not improve: patience 2 stops after 3 epochs
    assert epochs_run([0.5] + [0.1] * 9, patience=2) == 3


def test_min_steps_keeps_a_flat_run_going_until_the_floor():
    # 3 steps per epoch: the epoch ends at steps 3, 6, 9, 12; the first end at >= 10 steps is epoch 4
    assert epochs_run([0.5] + [0.1] * 9, patience=2, min_steps=10) == 4


def test_improvement_before_the_floor_resets_the_wait():
    # best at epoch 4 (index 3): after the floor (epoch 4) the run still waits 2 checks since that best
    assert epochs_run([0.1, 0.2, 0.2, 0.9] + [0.1] * 6, patience=2, min_steps=6) == 6


def test_a_non_finite_metric_still_stops_at_once():
    assert epochs_run([0.5, math.nan] + [0.1] * 8, patience=5, min_steps=100) == 2


def test_negative_min_steps_is_refused():
    with pytest.raises(ValueError, match="min_steps"):
        EarlyStopping(monitor="val/score", min_steps=-1)
