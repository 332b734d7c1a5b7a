"""``binary`` and ``multiclass``: one class per example.

Labels are read as strings; a table's numbers are one class whatever their spelling (``1`` and ``1.0``),
and numbers mixed with words are an error (a shifted or wrong column far more often than a real label set).
Classes sort numerically when they are numbers, else alphabetically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from ._base import TaskType, register_task_type, with_score


def number(s: Any) -> float | None:
    try:
        f = float(s)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def normalise(raw: list[str], refs: list[str], what: str) -> list[str]:
    """``1`` and ``1.0`` as one class; a mix of numbers and words is an error naming one row of each."""
    nums = [number(v) for v in raw]
    is_num = [n is not None for n in nums]
    if any(is_num) and not all(is_num):
        i, j = is_num.index(True), is_num.index(False)
        raise DataError(
            f"{what}: mixed label types: {refs[i]} has the number {raw[i]!r} but {refs[j]} has the word {raw[j]!r}; "
            "use one kind of label on every row, or choose the right column with --label-col"
        )
    if all(is_num):
        return [str(int(n)) if n.is_integer() else str(n) for n in nums]  # type: ignore[union-attr]
    return raw


class Classes(TaskType):
    """What binary and multiclass share: class ids, cross-entropy-style losses, the classification metrics."""

    calibrates = True

    @classmethod
    def encode(cls, raw: list[Any], refs: list[str], where: str, sep: str | None = None,
               names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        labels = normalise([str(v).strip() for v in raw], refs, where)
        uniq = sorted(set(labels))
        try:
            uniq = sorted(uniq, key=float)
        except ValueError:
            pass
        if len(uniq) < 2:
            only = uniq[0] if uniq else "none"
            raise DataError(f"{where}: only one class ({only!r}) found; transfer learning for classification needs at "
                            "least two labeled classes — add examples of another class")
        index = {c: i for i, c in enumerate(uniq)}
        return uniq, np.array([index[v] for v in labels], dtype=np.int64)

    @classmethod
    def metrics(cls, y: np.ndarray, outputs: np.ndarray, names: list[str], decisions: dict[str, Any] | None = None) -> dict[str, Any]:
        """accuracy, balanced accuracy, macro-F1, log-loss, ROC AUC (binary), confusion matrix, per-class
        precision, recall, F1 and support."""
        from sklearn import metrics as skm

        labels = list(range(len(names)))
        pred = outputs.argmax(1)
        p = np.clip(outputs, 1e-7, 1.0)
        p = p / p.sum(1, keepdims=True)
        out: dict[str, Any] = {
            "n": int(len(y)),
            "accuracy": float(skm.accuracy_score(y, pred)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)) if len(np.unique(y)) > 1 else float("nan"),
            "macro_f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
            "log_loss": float(skm.log_loss(y, p, labels=labels)),
        }
        if cls.name == "binary" and len(np.unique(y)) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y, outputs[:, 1]))
        cm = skm.confusion_matrix(y, pred, labels=labels)
        out["confusion_matrix"] = cm.tolist()
        prec, rec, f1, support = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        out["per_class"] = {names[i]: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                                       "support": int(support[i])} for i in labels}
        return with_score(cls, out)

    @staticmethod
    def batch_score(logits: Any, y: Any) -> Any:
        from torchmetrics.functional import accuracy

        if logits.shape[-1] == 1:
            return accuracy(logits.view(-1).sigmoid(), y, task="binary", validate_args=False)
        return accuracy(logits, y, task="multiclass", num_classes=logits.shape[-1], average="micro", validate_args=False)


@register_task_type
class Binary(Classes):
    """Two classes: one logit, BCE with smoothed targets; outputs P(class 0), P(class 1)."""

    name = "binary"

    @staticmethod
    def width(n: int) -> int:
        return 1

    @staticmethod
    def output_width(n: int) -> int:
        return 2

    @staticmethod
    def loss(head: Any, logits: Any, y: Any, label_smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        t = y.float().view(-1, 1) * (1.0 - label_smoothing) + 0.5 * label_smoothing
        return F.binary_cross_entropy_with_logits(logits, t)

    @staticmethod
    def outputs(head: Any, logits: Any) -> Any:
        import torch

        p = torch.sigmoid(logits.view(-1))
        return torch.stack([1.0 - p, p], dim=1)


@register_task_type
class Multiclass(Classes):
    """Three or more classes: cross-entropy with label smoothing; softmax outputs."""

    name = "multiclass"

    @staticmethod
    def loss(head: Any, logits: Any, y: Any, label_smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    @staticmethod
    def outputs(head: Any, logits: Any) -> Any:
        return logits.softmax(-1)
