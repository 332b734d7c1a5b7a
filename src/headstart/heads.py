"""Heads per task type: the layer on top of the backbone, its loss, its outputs.

=============  =============  ==================================  ======================
task           logits         loss                                outputs
=============  =============  ==================================  ======================
binary         [B, 1]         BCE with logits (smoothed targets)  P(class 1) -> [B, 2]
multiclass     [B, C]         cross-entropy (label smoothing)     softmax [B, C]
multilabel     [B, C]         BCE with logits per class           sigmoid [B, C]
regression     [B, T]         mean squared error                  the values [B, T]
=============  =============  ==================================  ======================

``normalize=s`` scales unit-length features by ``s`` before the linear layer: the head of a
cosine-distance prototype classifier (a few-shot run, `headstart.run._support`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    def __init__(self, task: str, num_features: int, num_outputs: int, dropout: float = 0.0,
                 normalize: float | None = None):
        super().__init__()
        self.task, self.normalize = task, normalize
        self.num_outputs = num_outputs
        width = 1 if task == "binary" else num_outputs
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(num_features, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.normalize is not None:
            features = F.normalize(features, dim=-1) * self.normalize
        return self.fc(self.dropout(features))

    def loss(self, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        if self.task == "multiclass":
            return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if self.task == "binary":
            t = y.float().view(-1, 1)
            t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
            return F.binary_cross_entropy_with_logits(logits, t)
        if self.task == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, y.float())
        return F.mse_loss(logits, y.float().view_as(logits))

    def accuracy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Accuracy of a batch's logits (torchmetrics); NaN for the tasks without one."""
        from torchmetrics.functional import accuracy

        if self.task == "binary":
            return accuracy(torch.sigmoid(logits.view(-1)), y, task="binary", validate_args=False)
        if self.task == "multiclass":
            return accuracy(logits, y, task="multiclass", num_classes=logits.shape[-1], average="micro", validate_args=False)
        return torch.tensor(float("nan"))

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, C] (or regression values)."""
        if self.task == "multiclass":
            return logits.softmax(-1)
        if self.task == "binary":
            p = torch.sigmoid(logits.view(-1))
            return torch.stack([1.0 - p, p], dim=1)
        if self.task == "multilabel":
            return torch.sigmoid(logits)
        return logits


def make_head(task: str, num_features: int, num_classes: int, dropout: float = 0.0) -> Head:
    return Head(task, num_features, num_classes, dropout)
