"""Metrics per task type (the task type's own, `headstart.targets`); batched prediction is `features.predict_outputs`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .targets import get_task_type, has_label


def compute_metrics(y: np.ndarray, probs: np.ndarray, task: str, classes: list[str],
                    decisions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The task's metrics plus ``score`` (its headline figure, higher is better) and ``score_name``.

    binary/multiclass: accuracy, balanced accuracy, macro-F1, log-loss, ROC AUC (binary), confusion matrix,
    per-class recall; multilabel: micro/macro F1, mAP, subset accuracy, Hamming loss, per label, with the
    ``decisions``' thresholds; regression: MAE, RMSE, R², Spearman, Pearson.
    """
    return get_task_type(task).metrics(y, probs, classes, decisions)


def multitask_metrics(targets: dict[str, tuple[str, list[str], np.ndarray]], outputs: dict[str, np.ndarray],
                      decisions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per task (``targets``: name -> (task type, names, labels with missing ones)) the task's metrics on its
    labeled examples, with its decisions; ``score`` is the mean of the task scores, ``log_loss`` the mean of
    the task losses."""
    per = {}
    for name, (task, names, y) in targets.items():
        m = has_label(y)
        if m.any():
            per[name] = compute_metrics(y[m], np.asarray(outputs[name])[m], task, names,
                                        (decisions or {}).get("tasks", {}).get(name))
    if not per:
        return {"n": 0, "tasks": {}}
    return {"n": int(max(v["n"] for v in per.values())), "tasks": per, "task": "multitask",
            "score": float(np.mean([v["score"] for v in per.values()])), "score_name": "mean task score",
            "log_loss": float(np.mean([v["log_loss"] for v in per.values()]))}
