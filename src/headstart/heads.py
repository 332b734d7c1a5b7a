"""The head: the layer on top of the backbone. Its loss and outputs are its task type's (`headstart.targets`):

=============  =============  ==================================  ======================
task           logits         loss                                outputs
=============  =============  ==================================  ======================
binary         [B, 1]         BCE with logits (smoothed targets)  P(class 1) -> [B, 2]
multiclass     [B, C]         cross-entropy (label smoothing)     softmax [B, C]
multilabel     [B, C]         BCE with logits per label           sigmoid [B, C]
regression     [B, T]         MSE (or Huber), standardised        the values [B, T]
=============  =============  ==================================  ======================

A task's own tensors are buffers of the head, saved with its weights when they decide answers: a
regression head's target scaler, a multilabel head's per-label thresholds (`Head.decisions`).
``normalize=s`` scales unit-length features by ``s`` before the linear layer: the head of a
cosine-distance prototype classifier (a few-shot run, `headstart.run._support`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .targets import get_task_type


class Head(nn.Module):
    def __init__(self, task: str, num_features: int, num_outputs: int, dropout: float = 0.0,
                 normalize: float | None = None):
        super().__init__()
        self.task, self.normalize = task, normalize
        self.kind = get_task_type(task)
        self.num_outputs = num_outputs
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(num_features, self.kind.width(num_outputs))
        for name, (value, saved) in self.kind.buffers(num_outputs).items():
            self.register_buffer(name, value, persistent=saved)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.normalize is not None:
            features = F.normalize(features, dim=-1) * self.normalize
        return self.fc(self.dropout(features))

    def loss(self, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        return self.kind.loss(self, logits, y, label_smoothing)

    def accuracy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's per-batch figure (accuracy; subset accuracy for multilabel; NaN for regression)."""
        return self.kind.batch_score(logits, y)

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, C], label probabilities, or the values of a regression."""
        return self.kind.outputs(self, logits)

    def fit_targets(self, y: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Before training: what the task fits on the training labels (a scaler, label weights)."""
        with torch.no_grad():
            return self.kind.fit_head(self, y, options)

    def decisions(self) -> dict[str, Any]:
        """What turns outputs into answers besides argmax: per-label thresholds of a multilabel head."""
        return {"thresholds": self.threshold.tolist()} if hasattr(self, "threshold") else {}

    def set_decisions(self, decisions: dict[str, Any]) -> None:
        if "thresholds" in decisions:
            with torch.no_grad():
                self.threshold.copy_(torch.as_tensor(decisions["thresholds"], dtype=torch.float32))


def make_head(task: str, num_features: int, num_classes: int, dropout: float = 0.0) -> Head:
    return Head(task, num_features, num_classes, dropout)
