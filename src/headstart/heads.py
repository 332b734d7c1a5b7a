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

from .targets import get_task_type, split_columns


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


class MultiHead(nn.Module):
    """One `Head` per task on one backbone (`multitask`). ``forward`` gives every task's logits side by side,
    ``outputs`` every task's outputs side by side (``split`` cuts them apart), so that the paths that run one
    head (prediction, feature caches, ONNX) run this one unchanged."""

    task = "multitask"
    normalize = None

    def __init__(self, tasks: dict[str, tuple[str, int]], num_features: int, dropout: float = 0.0):
        super().__init__()
        self.heads = nn.ModuleDict({name: Head(task, num_features, n, dropout) for name, (task, n) in tasks.items()})
        self.logit_widths = [h.fc.out_features for h in self.heads.values()]
        self.output_widths = {name: h.kind.output_width(h.num_outputs) for name, h in self.heads.items()}
        self.num_outputs = sum(self.output_widths.values())

    def logits(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: h(features) for name, h in self.heads.items()}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(self.logits(features).values()), dim=-1)

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        parts = torch.split(logits, self.logit_widths, dim=-1)
        return torch.cat([h.outputs(p) for h, p in zip(self.heads.values(), parts)], dim=-1)

    def split(self, outputs: Any) -> dict[str, Any]:
        """Side-by-side outputs [N, sum of widths] -> {task: its outputs}."""
        return split_columns(outputs, self.output_widths)

    def accuracy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float("nan"))  # per task: see the strategy's logged terms

    def decisions(self) -> dict[str, Any]:
        got = {name: h.decisions() for name, h in self.heads.items()}
        return {"tasks": {k: v for k, v in got.items() if v}} if any(got.values()) else {}

    def set_decisions(self, decisions: dict[str, Any]) -> None:
        for name, d in decisions.get("tasks", {}).items():
            self.heads[name].set_decisions(d)
