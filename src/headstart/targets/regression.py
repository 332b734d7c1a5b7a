"""``regression``: one number per example (a score, a price, a similarity), or several (one per label column).

Read from numeric columns. Detection never takes integer class ids for values: a column of integers is
classes unless ``--task-type regression`` says otherwise, and one with more than `data.AMBIGUOUS_INTEGERS`
distinct integers is refused until ``--task-type`` decides; a column with non-integer numbers is regression.
A cell that is not a number is an error naming its row.

The head predicts the target standardised by the training split's mean and standard deviation (kept in the
head, so a loaded run, its ONNX export and the server all answer in the original units); the loss is MSE
(``--regression-loss huber``: Huber with delta 1, in standard deviations). Splits are stratified by quintile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from ._base import TaskType, register_task_type, with_score
from .classes import number

QUANTILE_BINS = 5


@register_task_type
class Regression(TaskType):
    name = "regression"
    score = "r2"
    headline = ("r2", "spearman", "mae", "rmse")
    probabilities = False

    @classmethod
    def encode(cls, raw: list[Any], refs: list[str], where: str, sep: str | None = None,
               names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        rows = [v if isinstance(v, (list, tuple)) else (v,) for v in raw]
        width = len(rows[0]) if rows else 1
        names = list(names) if names is not None else (["value"] if width == 1 else [f"value{i}" for i in range(width)])
        y = np.zeros((len(rows), width), dtype=np.float32)
        for r, (cells, ref) in enumerate(zip(rows, refs)):
            for j, cell in enumerate(cells):
                f = number(cell)
                if f is None:
                    raise DataError(f"{ref}: {str(cell)[:60]!r} in the regression target {names[j]!r} is not a number; "
                                    "fix or delete the row (or give --task-type multiclass if the column holds classes)")
                y[r, j] = f
        if len(y) and np.all(y.std(0) == 0):
            raise DataError(f"{where}: every row has the same target value ({y[0].tolist()}); there is nothing to learn")
        return names, y

    @staticmethod
    def strata(y: np.ndarray) -> np.ndarray:
        edges = np.quantile(y[:, 0], np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]) if len(y) else []
        return np.searchsorted(np.unique(edges), y[:, 0], side="right").astype(np.int64)

    @classmethod
    def unseen(cls, y: np.ndarray, train_idx: np.ndarray, idx: np.ndarray) -> tuple[int, int] | None:
        return None

    @staticmethod
    def counts(y: np.ndarray, idx: np.ndarray, names: list[str]) -> dict[str, Any]:
        part = y[idx]
        return {c: {"mean": round(float(part[:, j].mean()), 4), "std": round(float(part[:, j].std()), 4),
                    "min": float(part[:, j].min()), "max": float(part[:, j].max())} if len(part) else {}
                for j, c in enumerate(names)}

    @staticmethod
    def buffers(n: int) -> dict[str, Any]:
        import torch

        return {"target_mean": (torch.zeros(n), True), "target_std": (torch.ones(n), True)}

    @staticmethod
    def fit_head(head: Any, y: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        import torch

        mean, std = y.mean(0), y.std(0)
        std = np.where(std > 0, std, 1.0)
        head.target_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        head.target_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        head.regression_loss = options.get("regression_loss", "mse")
        return {"target_mean": [float(v) for v in mean], "target_std": [float(v) for v in std]}

    @staticmethod
    def loss(head: Any, logits: Any, y: Any, label_smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        z = (y.float().view_as(logits) - head.target_mean) / head.target_std
        if getattr(head, "regression_loss", "mse") == "huber":
            return F.huber_loss(logits, z, delta=1.0)
        return F.mse_loss(logits, z)

    @staticmethod
    def outputs(head: Any, logits: Any) -> Any:
        return logits * head.target_std + head.target_mean

    @classmethod
    def metrics(cls, y: np.ndarray, outputs: np.ndarray, names: list[str], decisions: dict[str, Any] | None = None) -> dict[str, Any]:
        """MAE, RMSE, R², Spearman and Pearson correlation; averaged over targets, and per target when there are
        several. ``log_loss`` is the mean squared error (the loss a search minimises)."""
        from scipy import stats
        from sklearn import metrics as skm

        y, outputs = y.reshape(len(y), -1), outputs.reshape(len(outputs), -1)

        def one(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
            varies = len(t) > 1 and np.ptp(t) > 0 and np.ptp(p) > 0  # a constant side has no correlation
            return {"mae": float(skm.mean_absolute_error(t, p)), "rmse": float(np.sqrt(skm.mean_squared_error(t, p))),
                    "r2": float(skm.r2_score(t, p)) if len(t) > 1 else float("nan"),
                    "spearman": float(stats.spearmanr(t, p).statistic) if varies else float("nan"),
                    "pearson": float(stats.pearsonr(t, p).statistic) if varies else float("nan")}

        per = {c: one(y[:, j], outputs[:, j]) for j, c in enumerate(names)}
        out: dict[str, Any] = {"n": int(len(y)), **{k: float(np.mean([v[k] for v in per.values()])) for k in per[names[0]]}}
        out["log_loss"] = float(skm.mean_squared_error(y, outputs))
        if len(names) > 1:
            out["per_target"] = per
        return with_score(cls, out)

    @classmethod
    def records(cls, outputs: np.ndarray, names: list[str], decisions: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        outputs = outputs.reshape(len(outputs), -1)
        if len(names) == 1:
            return [{"value": round(float(p[0]), 6)} for p in outputs]
        return [{"values": {c: round(float(v), 6) for c, v in zip(names, p)}} for p in outputs]
