"""Several targets on one set of examples: what `multitask` trains on.

Two ways in (see `load_data`'s ``multitask`` and ``tasks``):

* one table with several label columns (``--label-col coarse --label-col fine``), each column a task of its
  own, its type decided on its own cells (`decide_target`); a row is kept when at least one of its labels is
  there, and a blank cell is a missing label of that task only;
* several datasets of one modality (``--task name=PATH``), each split as it would be alone, then put side
  by side: an example is labeled for its own dataset's task and missing for the others.

A missing label is -1 (classes) or NaN (multilabel rows, values): the loss masks it per task. Such a
`Dataset` has ``task == "multitask"``, ``classes`` = the task names, ``targets`` = one `Target` each, and
``y`` = the stratum each example was split by (the first task's, missing labels a stratum of their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from ..targets import get_task_type, has_label
from ._dataset import Dataset, decide_target
from ._store import Chain


@dataclass
class Target:
    """One task of a multi-target dataset: its name, type, class (label, value) names and labels."""

    name: str
    task: str
    classes: list[str]
    y: np.ndarray  # one row per example of the dataset; missing: -1 (classes) or NaN
    how: dict[str, str]  # how the task type was decided (as `Dataset.decided["task"]`)

    @property
    def known(self) -> np.ndarray:
        """bool [N]: examples that carry this task's label."""
        return has_label(self.y)

    @property
    def kind(self) -> Any:
        return get_task_type(self.task)

    def summary(self, idx: np.ndarray) -> dict[str, Any]:
        part = idx[self.known[idx]]
        return {"task": self.task, "classes": list(self.classes), "labeled": int(len(part)),
                "counts": self.kind.counts(self.y, part, self.classes)}


def missing_like(y: np.ndarray, n: int) -> np.ndarray:
    """``n`` missing labels of ``y``'s kind: -1 for class ids, NaN rows for label sets and values."""
    if y.dtype.kind == "i":
        return np.full(n, -1, dtype=y.dtype)
    return np.full((n, *y.shape[1:]), np.nan, dtype=np.float32)


def encode_targets(rows: list[tuple[Any, ...]], refs: list[str], where: str, columns: list[str], *,
                   task_type: str = "auto", label_sep: str | None = None) -> dict[str, Target]:
    """One `Target` per label column; ``rows`` hold each row's cells, None where the label is missing."""
    if len(set(columns)) != len(columns):
        raise DataError(f"{where}: a label column is named twice ({', '.join(columns)})")
    out = {}
    for j, col in enumerate(columns):
        known = np.array([r[j] is not None for r in rows], dtype=bool)
        if not known.any():
            raise DataError(f"{where}: label column {col!r} is empty on every row; drop it from --label-col")
        cells = [r[j] for r, k in zip(rows, known) if k]
        task, names, y, how = decide_target(cells, [f for f, k in zip(refs, known) if k], where, task_type=task_type,
                                            label_sep=label_sep, columns=[col])
        full = missing_like(y, len(rows))
        full[known] = y
        out[str(col)] = Target(str(col), task, names, full, how)
    return out


def strata_of(targets: dict[str, Target]) -> np.ndarray:
    """The first task's strata; its unlabeled examples form one more stratum."""
    first = next(iter(targets.values()))
    s = np.full(len(first.y), -1, dtype=np.int64)
    s[first.known] = first.kind.strata(first.y[first.known])
    return np.where(s < 0, s.max() + 1, s)


def check_targets(ds: Dataset) -> None:
    """Per task: a label seen in validation or test but never in training is an error naming the row."""
    for t in ds.targets.values():
        train = ds.train_idx[t.known[ds.train_idx]]
        if not len(train):
            raise DataError(f"task {t.name!r}: no labeled training example; give it labels or drop it")
        for part, idx in (("validation", ds.val_idx), ("test", ds.test_idx)):
            found = t.kind.unseen(t.y, train, idx[t.known[idx]])
            if found is not None:
                i, c = found
                raise DataError(f"{ds.refs[i]}: label {t.classes[c]!r} of task {t.name!r} appears in the {part} data but "
                                "never in training; add training examples of it or remove it from the evaluation data")


def merge_datasets(named: dict[str, Dataset]) -> Dataset:
    """Several single-target datasets side by side, each keeping its own split; each example labeled for its own
    task only."""
    parts = list(named.items())
    modalities = {d.modality for _, d in parts}
    if len(modalities) > 1:
        raise DataError(f"option --task: the datasets hold {' and '.join(sorted(modalities))}s; every task of one model "
                        "needs the same kind of input")
    sizes = np.cumsum([0] + [len(d.items) for _, d in parts])
    targets = {}
    for (name, d), start in zip(parts, sizes):
        y = missing_like(d.y, int(sizes[-1]))
        y[start:start + len(d.items)] = d.y
        targets[name] = Target(name, d.task, list(d.classes), y, d.decided.get("task", {}))
    def cat(attr: str) -> list[Any]:
        return [x for _, d in parts for x in getattr(d, attr)]

    def idx(attr: str) -> np.ndarray:
        return np.concatenate([getattr(d, attr) + start for (_, d), start in zip(parts, sizes)]).astype(np.int64)

    strata = np.concatenate([d.strata() + 1000 * k for k, (_, d) in enumerate(parts)])
    decided = {f"{name}: {k}": v for name, d in parts for k, v in d.decided.items()}
    items = cat("items") if all(isinstance(d.items, list) for _, d in parts) else Chain([d.items for _, d in parts])
    return Dataset(modality=modalities.pop(), classes=list(named), items=items, y=strata, refs=cat("refs"),
                   keys=cat("keys"), train_idx=idx("train_idx"), val_idx=idx("val_idx"), test_idx=idx("test_idx"),
                   name="+".join(named), task="multitask", skipped=cat("skipped"), decided=decided, targets=targets)


__all__ = ["Target", "check_targets", "encode_targets", "merge_datasets", "missing_like", "strata_of"]
