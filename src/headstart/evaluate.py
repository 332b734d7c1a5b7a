"""Metrics per task type, and batched prediction through backbone + head."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._progress import track


@torch.inference_mode()
def predict_outputs(backbone: Any, head: Any, items: list[Any], batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, C] (values for regression), in the order of ``items``."""
    backbone.eval()
    head.eval()
    batcher = backbone.preprocess(train=False)
    order = np.arange(len(items))
    if backbone.modality == "text" and hasattr(batcher, "lengths"):
        order = np.argsort(np.asarray(batcher.lengths(items)), kind="stable")
    out: np.ndarray | None = None
    starts = range(0, len(items), batch_size)
    for s in track(starts, len(starts), "predicting", min_total=3):
        idx = order[s : s + batch_size]
        batch = batcher([items[i] for i in idx])
        probs = head.outputs(head(backbone.forward_features(batch))).float().numpy()
        if out is None:
            out = np.empty((len(items), probs.shape[1]), dtype=np.float32)
        out[idx] = probs
    return out if out is not None else np.zeros((0, head.num_outputs), dtype=np.float32)


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
