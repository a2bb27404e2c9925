"""A training run whose loss stops being a number says so in one line, instead of failing later
on the metrics of NaN probabilities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.train import TrainingDiverged, train_one_epoch


def test_a_diverged_epoch_stops_with_a_plain_reason() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    images, labels = torch.rand(8, 3, 4, 4), torch.tensor([0, 1] * 4)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=4
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    finite = train_one_epoch(model, loader, optimizer, nn.CrossEntropyLoss(), amp=None, epoch=1)
    assert finite["loss"] > 0

    def exploding(logits, targets):
        return nn.functional.cross_entropy(logits, targets) * float("inf")

    with pytest.raises(TrainingDiverged, match=r"training diverged in epoch 2.*--optim\.lr"):
        train_one_epoch(model, loader, optimizer, exploding, amp=None, epoch=2)
