"""``multilabel``: any number of labels per example (tags, emotions, toxicity kinds).

Read from (see `data.read_table`):

* one column of separated labels, ``a|b`` or ``a,b`` (``--label-sep``; else the separator found among
  ``|``, ``,`` and ``;``), or a JSON list ``["a", "b"]`` (a JSON Lines or Parquet list, or that text in a cell);
* several 0/1 columns (``--label-col toxic --label-col insult``): the label names are the column names.

An empty cell is a missing label and is skipped like any other (``[]`` says "none of the labels").
One logit per label, BCE per label (``--pos-weight auto`` weighs each label's positives by its
negatives-to-positives ratio in training, for rare labels); label smoothing is not applied.
After training a threshold per label is chosen on the selection split (the F1-best of 0.05 ... 0.95,
0.5 where the split holds no positive) and saved with the run; metrics and `predict` use them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import DataError
from ._base import TaskType, register_task_type, with_score

SEPARATORS = ("|", ",", ";")
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
MAX_POS_WEIGHT = 100.0  # a label seen once in 10,000 examples would otherwise get a weight of 10,000


def label_lists(raw: list[Any], refs: list[str], where: str, sep: str | None) -> list[list[str]]:
    """Each cell as its list of labels: a list as it is, a JSON list in text, else split at ``sep``."""
    out = []
    for v, ref in zip(raw, refs):
        if isinstance(v, (list, tuple, np.ndarray)):
            out.append([str(x).strip() for x in v])
            continue
        s = str(v).strip()
        if s.startswith("["):
            try:
                got = json.loads(s)
            except json.JSONDecodeError:
                raise DataError(f"{ref}: {s[:60]!r} starts like a JSON list but is not one; write [\"a\", \"b\"] or "
                                "separate the labels with | or ,") from None
            out.append([str(x).strip() for x in (got if isinstance(got, list) else [got])])
        else:
            out.append([p.strip() for p in s.split(sep)] if sep else [s])
    for labels, ref in zip(out, refs):
        if any(not x for x in labels):
            raise DataError(f"{where}: {ref} has an empty label in {labels!r}; remove the extra separator")
    return out


def separator_of(raw: list[Any]) -> str | None:
    """The first of ``|``, ``,``, ``;`` that some text cell holds."""
    texts = [str(v) for v in raw if not isinstance(v, (list, tuple, np.ndarray))]
    return next((s for s in SEPARATORS if any(s in t for t in texts)), None)


@register_task_type
class Multilabel(TaskType):
    name = "multilabel"
    score = "micro_f1"
    headline = ("micro_f1", "macro_f1", "mean_average_precision", "subset_accuracy", "hamming_loss")
    decides = True

    @classmethod
    def encode(cls, raw: list[Any], refs: list[str], where: str, sep: str | None = None,
               names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        lists = label_lists(raw, refs, where, sep if sep is not None else separator_of(raw))
        if names is None:
            names = sorted({x for labels in lists for x in labels})
            try:
                names = sorted(names, key=float)
            except ValueError:
                pass
        if len(names) < 2:
            raise DataError(f"{where}: a single label ({', '.join(names) or 'none'}) in the multilabel column; that is a "
                            "binary task: give --task-type binary, or check --label-sep")
        index = {c: i for i, c in enumerate(names)}
        y = np.zeros((len(lists), len(names)), dtype=np.float32)
        for r, labels in enumerate(lists):
            y[r, [index[x] for x in labels]] = 1.0
        return names, y

    @staticmethod
    def strata(y: np.ndarray) -> np.ndarray:
        """The rarest label an example has (one more group for examples with none): rare labels reach every split."""
        freq = y.sum(0)
        rank = np.where(y > 0, freq[None, :], np.inf)
        return np.where(y.any(1), rank.argmin(1), y.shape[1]).astype(np.int64)

    @classmethod
    def unseen(cls, y: np.ndarray, train_idx: np.ndarray, idx: np.ndarray) -> tuple[int, int] | None:
        seen = y[train_idx].any(0) if len(train_idx) else np.zeros(y.shape[1], bool)
        for i in idx:
            missing = np.flatnonzero((y[i] > 0) & ~seen)
            if len(missing):
                return int(i), int(missing[0])
        return None

    @staticmethod
    def counts(y: np.ndarray, idx: np.ndarray, names: list[str]) -> dict[str, Any]:
        c = y[idx].sum(0) if len(idx) else np.zeros(len(names))
        return {names[i]: int(c[i]) for i in range(len(names))}

    @staticmethod
    def buffers(n: int) -> dict[str, Any]:
        import torch

        return {"threshold": (torch.full((n,), 0.5), True), "pos_weight": (torch.ones(n), False)}

    @staticmethod
    def fit_head(head: Any, y: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        import torch

        if options.get("pos_weight", "none") != "auto":
            return {}
        pos = y.sum(0)
        w = np.clip((len(y) - pos) / np.maximum(pos, 1.0), 1.0, MAX_POS_WEIGHT)
        head.pos_weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        return {"pos_weight": [round(float(v), 3) for v in w]}

    @staticmethod
    def loss(head: Any, logits: Any, y: Any, label_smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=head.pos_weight)

    @staticmethod
    def outputs(head: Any, logits: Any) -> Any:
        return logits.sigmoid()

    @staticmethod
    def batch_score(logits: Any, y: Any) -> Any:
        return ((logits > 0) == (y > 0.5)).all(-1).float().mean()  # subset accuracy at 0.5

    @staticmethod
    def decide(y: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
        """Per label, the threshold of `THRESHOLDS` with the best F1 on these examples (ties: the one nearest 0.5)."""
        th = np.full(y.shape[1], 0.5)
        pos = y > 0.5
        for j in range(y.shape[1]):
            if not pos[:, j].any():
                continue
            pred = outputs[:, j][None, :] >= THRESHOLDS[:, None]  # [T, N]
            tp = (pred & pos[:, j]).sum(1)
            f1 = 2 * tp / np.maximum(pred.sum(1) + pos[:, j].sum(), 1)
            best = np.flatnonzero(f1 == f1.max())
            th[j] = THRESHOLDS[best[np.abs(THRESHOLDS[best] - 0.5).argmin()]]
        return {"thresholds": [float(t) for t in th]}

    @classmethod
    def metrics(cls, y: np.ndarray, outputs: np.ndarray, names: list[str], decisions: dict[str, Any] | None = None) -> dict[str, Any]:
        """Micro/macro F1, mean average precision (labels with a positive), subset accuracy, Hamming loss, mean
        BCE (``log_loss``), and per label F1, precision, recall, support and the threshold used."""
        from sklearn import metrics as skm

        th = np.asarray((decisions or {}).get("thresholds") or [0.5] * len(names))
        truth = (y > 0.5).astype(int)
        pred = (outputs >= th[None, :]).astype(int)
        has = truth.sum(0) > 0
        p = np.clip(outputs, 1e-7, 1 - 1e-7)
        prec, rec, f1, sup = skm.precision_recall_fscore_support(truth, pred, average=None, zero_division=0)
        out: dict[str, Any] = {
            "n": int(len(y)),
            "micro_f1": float(skm.f1_score(truth, pred, average="micro", zero_division=0)),
            "macro_f1": float(skm.f1_score(truth, pred, average="macro", zero_division=0)),
            "mean_average_precision": float(skm.average_precision_score(truth[:, has], outputs[:, has], average="macro"))
            if has.any() else float("nan"),
            "subset_accuracy": float(skm.accuracy_score(truth, pred)),
            "hamming_loss": float(skm.hamming_loss(truth, pred)),
            "log_loss": float(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)).mean()),
            "per_label": {c: {"f1": float(f1[i]), "precision": float(prec[i]), "recall": float(rec[i]),
                              "support": int(sup[i]), "threshold": float(th[i])} for i, c in enumerate(names)},
        }
        out["accuracy"] = out["subset_accuracy"]  # scikit-learn's accuracy of a multilabel prediction
        return with_score(cls, out)

    @classmethod
    def records(cls, outputs: np.ndarray, names: list[str], decisions: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        th = np.asarray((decisions or {}).get("thresholds") or [0.5] * len(names))
        return [{"labels": [c for c, v, t in zip(names, p, th) if v >= t],
                 "probabilities": {c: round(float(v), 6) for c, v in zip(names, p)}} for p in outputs]
