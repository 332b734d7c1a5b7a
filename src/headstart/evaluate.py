"""Metrics per task type (batched prediction is `features.predict_outputs`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def compute_metrics(y: np.ndarray, probs: np.ndarray, task: str, classes: list[str]) -> dict[str, Any]:
    """accuracy, balanced accuracy, macro-F1, log-loss, ROC AUC (binary), confusion matrix, per-class recall."""
    from sklearn import metrics as skm

    if task not in ("binary", "multiclass"):
        raise NotImplementedError(f"metrics for task {task} are not implemented yet")
    labels = list(range(len(classes)))
    pred = probs.argmax(1)
    p = np.clip(probs, 1e-7, 1.0)
    p = p / p.sum(1, keepdims=True)
    out: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)) if len(np.unique(y)) > 1 else float("nan"),
        "macro_f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(y, p, labels=labels)),
    }
    if task == "binary" and len(np.unique(y)) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, probs[:, 1]))
    cm = skm.confusion_matrix(y, pred, labels=labels)
    out["confusion_matrix"] = cm.tolist()
    recall = cm.diagonal() / np.maximum(cm.sum(1), 1)
    out["per_class_recall"] = {classes[i]: float(recall[i]) for i in labels}
    return out
