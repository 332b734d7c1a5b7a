"""The `TaskType` interface and its registry.

A task type says everything that depends on what a label *is* (one class of two, one of many, a set of
labels, a number), so that readers, heads, metrics, the report and `predict` ask it instead of testing names:

==========  =======================  =====================================  ==============================
task        ``y`` (per example)      head: logits -> outputs                 decided on the selection split
==========  =======================  =====================================  ==============================
binary      int64 class id           [B, 1] -> P(class) [B, 2]               nothing
multiclass  int64 class id           [B, C] -> softmax [B, C]                nothing
multilabel  float32 0/1 row [C]      [B, C] -> sigmoid [B, C]                a threshold per label
regression  float32 value [T]        [B, T] standardised -> the values       nothing (the scaler is fitted
                                                                             on the training split)
==========  =======================  =====================================  ==============================

``names`` are the class names (binary, multiclass), the label names (multilabel) or the target columns
(regression). One file per task type, registered by name with `register_task_type`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:  # torch is imported where used: reading data does not load it
    import torch

_TYPES: dict[str, type[TaskType]] = {}


def register_task_type(cls: type[TaskType]) -> type[TaskType]:
    """Class decorator: register under ``cls.name``; a duplicate name is an error."""
    if cls.name in _TYPES:
        raise ValueError(f"task type {cls.name!r} is already registered")
    _TYPES[cls.name] = cls
    return cls


def get_task_type(name: str) -> type[TaskType]:
    if name not in _TYPES:
        raise DataError(f"option --task-type: {name!r} is unknown; choose one of {', '.join(task_type_names())}")
    return _TYPES[name]


def task_type_names() -> list[str]:
    return list(_TYPES)


class TaskType:
    """Static behaviour of one kind of target; subclasses override what differs."""

    name: ClassVar[str] = ""
    # The figure a task is judged by, higher is better: what seeds, compare and tune read as "score".
    score: ClassVar[str] = "accuracy"
    # The metrics the closing summary shows, in order.
    headline: ClassVar[tuple[str, ...]] = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")
    # Outputs are one probability per name (classes, labels), not values.
    probabilities: ClassVar[bool] = True
    # One class per example, its outputs a distribution: top-label calibration (ECE, temperature) applies.
    calibrates: ClassVar[bool] = False
    # Something is chosen on the selection split after training (`decide`).
    decides: ClassVar[bool] = False

    # -- data ---------------------------------------------------------------------------
    @classmethod
    def encode(cls, raw: list[Any], refs: list[str], where: str, sep: str | None = None,
               names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(names, y) from the label cells as read (see the module table for ``y``). ``sep``: a multilabel
        column's separator; ``names``: the label columns when the labels come from several (0/1 or values)."""
        raise NotImplementedError

    @staticmethod
    def strata(y: np.ndarray) -> np.ndarray:
        """An int group per example, for stratified splits (the class, by default)."""
        return y

    @classmethod
    def unseen(cls, y: np.ndarray, train_idx: np.ndarray, idx: np.ndarray) -> tuple[int, int] | None:
        """(example, name index) of the first example of ``idx`` whose label never occurs in training, or None."""
        seen = set(np.unique(y[train_idx]).tolist()) if len(train_idx) else set()
        for i in idx:
            if int(y[i]) not in seen:
                return int(i), int(y[i])
        return None

    @staticmethod
    def counts(y: np.ndarray, idx: np.ndarray, names: list[str]) -> dict[str, Any]:
        """What the summary shows of a split's labels: examples per class."""
        c = np.bincount(y[idx], minlength=len(names))
        return {names[i]: int(c[i]) for i in range(len(names))}

    # -- the head -------------------------------------------------------------------------
    @staticmethod
    def width(n: int) -> int:
        """Logits per example for ``n`` names."""
        return n

    @staticmethod
    def output_width(n: int) -> int:
        """Output columns per example for ``n`` names (a binary head's one logit gives two probabilities)."""
        return n

    @staticmethod
    def buffers(n: int) -> dict[str, Any]:
        """Tensors the head keeps for this task (a scaler, thresholds), name -> (initial value, saved)."""
        return {}

    @staticmethod
    def fit_head(head: Any, y: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """Set the head's buffers from the training labels before training; returns what was set, for the run."""
        return {}

    @staticmethod
    def loss(head: Any, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def outputs(head: Any, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def batch_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A per-batch figure for the training log (accuracy; NaN where there is none)."""
        import torch

        return torch.tensor(float("nan"))

    # -- decisions and metrics --------------------------------------------------------------
    @staticmethod
    def decide(y: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
        """What is chosen on the selection split after training (per-label thresholds); {} = nothing."""
        return {}

    @classmethod
    def metrics(cls, y: np.ndarray, outputs: np.ndarray, names: list[str], decisions: dict[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def records(cls, outputs: np.ndarray, names: list[str], decisions: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """`predict`'s answer per example, without its ``input``: the label and the probabilities."""
        return [{"label": names[int(p.argmax())], "probabilities": {c: round(float(v), 6) for c, v in zip(names, p)}}
                for p in outputs]


def has_label(y: np.ndarray) -> np.ndarray:
    """bool [N]: the examples that carry a label (missing: -1 class ids, NaN label rows or values)."""
    return y >= 0 if y.dtype.kind == "i" else ~np.isnan(y.reshape(len(y), -1)).any(axis=1)


def split_columns(outputs: Any, widths: dict[str, int]) -> dict[str, Any]:
    """Side-by-side outputs [N, sum of widths] -> {name: its columns} (several tasks' outputs)."""
    out, start = {}, 0
    for name, w in widths.items():
        out[name], start = outputs[:, start:start + w], start + w
    return out


def with_score(cls: type[TaskType], out: dict[str, Any]) -> dict[str, Any]:
    """Metrics plus the task's ``score`` (and its name), the figure every comparison reads."""
    return {**out, "score": out[cls.score], "score_name": cls.score, "task": cls.name}


def truthy(v: Any) -> bool | None:
    """A 0/1 cell: 1/0, true/false, yes/no, y/n (any case); None when it is none of them."""
    s = str(v).strip().lower()
    if s in ("1", "1.0", "true", "yes", "y", "t"):
        return True
    if s in ("0", "0.0", "false", "no", "n", "f"):
        return False
    return None


__all__ = ["TaskType", "get_task_type", "has_label", "register_task_type", "split_columns", "task_type_names", "truthy",
           "with_score"]
