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


# -- calibration -----------------------------------------------------------------------------
CALIBRATION_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017) and torchmetrics' default


def reliability(y: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Top-label calibration of class probabilities ``probs`` [N, C] against labels ``y`` [N].

    ``ece``: the expected calibration error, sum over confidence bins of (bin share) x |accuracy - confidence|;
    ``bins``: per non-empty bin, its range, count, mean confidence and accuracy (the reliability diagram).
    """
    conf = probs.max(1)
    right = (probs.argmax(1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)  # (lo, hi] per bin
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            gap = abs(float(right[m].mean()) - float(conf[m].mean()))
            ece += m.mean() * gap
            rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                         "confidence": float(conf[m].mean()), "accuracy": float(right[m].mean())})
    return {"ece": float(ece), "bins": rows}


def with_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    """Probabilities rescaled by temperature ``t``: softmax(log p / t) (t > 1 softens, t < 1 sharpens)."""
    z = np.log(np.clip(probs, 1e-12, 1.0)) / t
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(y: np.ndarray, probs: np.ndarray) -> float:
    """The temperature minimising the log-loss of ``probs`` on labels ``y`` (Guo et al., 2017), searched on
    log t in [-3, 3] (bounded, one-dimensional: scipy's Brent method)."""
    from scipy.optimize import minimize_scalar

    idx = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-np.log(np.clip(with_temperature(probs, float(np.exp(log_t)))[idx, y], 1e-12, 1.0)).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def calibration(y_test: np.ndarray, p_test: np.ndarray, y_sel: np.ndarray | None = None,
                p_sel: np.ndarray | None = None) -> dict[str, Any]:
    """Held-out calibration: ECE and reliability bins; with a selection split, the temperature fitted there and
    the held-out ECE and log-loss it would give (the model itself is not changed)."""
    from sklearn.metrics import log_loss

    labels = list(range(p_test.shape[1]))
    out: dict[str, Any] = {"bins_count": CALIBRATION_BINS, **reliability(y_test, p_test),
                           "log_loss": float(log_loss(y_test, np.clip(p_test, 1e-12, 1.0), labels=labels))}
    if y_sel is not None and p_sel is not None and len(y_sel):
        t = fit_temperature(y_sel, p_sel)
        scaled = with_temperature(p_test, t)
        after = reliability(y_test, scaled)
        out["temperature"] = {"value": t, "fitted_on": f"selection split (n={len(y_sel)})", "ece": after["ece"],
                              "bins": after["bins"], "log_loss": float(log_loss(y_test, scaled, labels=labels))}
    return out


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and the 95% interval of the mean (Student's t, n - 1 degrees of freedom:
    with 5 folds or 3 seeds the normal 1.96 would be too narrow)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return {"n": len(v), "mean": mean, "std": 0.0, "ci95_low": float("nan"), "ci95_high": float("nan")}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(v) - 1) * std / np.sqrt(len(v)))
    return {"n": len(v), "mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half}


# -- the examples a report shows ---------------------------------------------------------------
def confidently_wrong(y: np.ndarray, probs: np.ndarray, names: list[str], k: int = 12) -> list[dict[str, Any]]:
    """The ``k`` wrong answers given with the highest probability: position in ``y``, true and predicted class,
    the probability of the predicted one and of the true one."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]
    return [{"position": int(i), "true": names[y[i]], "predicted": names[pred[i]], "confidence": float(probs[i, pred[i]]),
             "p_true": float(probs[i, y[i]])} for i in order]


def confused_pairs(y: np.ndarray, probs: np.ndarray, names: list[str], k: int = 5, per_pair: int = 4) -> list[dict[str, Any]]:
    """The ``k`` most frequent (true, predicted) mistakes, each with the positions of up to ``per_pair`` of its
    examples, the most confident first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    pairs: dict[tuple[int, int], list[int]] = {}
    for i in wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")]:
        pairs.setdefault((int(y[i]), int(pred[i])), []).append(int(i))
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:k]
    return [{"true": names[t], "predicted": names[p], "count": len(pos), "positions": pos[:per_pair]}
            for (t, p), pos in ranked]
