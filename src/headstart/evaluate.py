"""Metrics per task type (the task type's own, `headstart.targets`); batched prediction is `features.predict_outputs`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .targets import get_task_type


def compute_metrics(y: np.ndarray, probs: np.ndarray, task: str, classes: list[str],
                    decisions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The task's metrics plus ``score`` (its headline figure, higher is better) and ``score_name``.

    binary/multiclass: accuracy, balanced accuracy, macro-F1, log-loss, ROC AUC (binary), confusion matrix,
    per-class recall; multilabel: micro/macro F1, mAP, subset accuracy, Hamming loss, per label, with the
    ``decisions``' thresholds; regression: MAE, RMSE, R², Spearman, Pearson.
    """
    return get_task_type(task).metrics(y, probs, classes, decisions)
