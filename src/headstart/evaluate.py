"""Metrics per task type, and batched prediction through backbone + head."""

from __future__ import annotations

from typing import Any

import numpy as np

from .features import run_batches


def predict_outputs(backbone: Any, head: Any, items: list[Any], batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, C] (values for regression), in the order of ``items``."""
    head.eval()
    width = 2 if head.task == "binary" else head.num_outputs
    return run_batches(backbone, items, width, lambda b: head.outputs(head(backbone.forward_features(b))),
                       batch_size, "predicting")


def head_outputs(head: Any, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """What `predict_outputs` gives, from features the backbone already computed (a frozen backbone's cache)."""
    import torch

    head.eval()
    with torch.inference_mode():
        return np.concatenate([head.outputs(head(torch.as_tensor(np.asarray(features[i:i + batch_size]), dtype=torch.float32))).numpy()
                               for i in range(0, len(features), batch_size)])


def latency_per_example(backbone: Any, head: Any, items: list[Any], warmup: int = 3) -> float:
    """Median milliseconds to predict one example alone (batch of 1), preprocessing included."""
    import time

    import torch

    backbone.eval()
    head.eval()
    batcher = backbone.preprocess(train=False)
    times = []
    with torch.inference_mode():
        for i, item in enumerate([items[0]] * warmup + list(items)):
            t0 = time.perf_counter()
            head.outputs(head(backbone.forward_features(batcher([item]))))
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


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
