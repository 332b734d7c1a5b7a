"""The in-memory dataset every strategy trains on.

One `Dataset` holds all examples once (decoded images or texts) plus three
index arrays into them:

* ``train_idx`` – what the model learns from;
* ``val_idx``   – held out from training to choose epochs and hyper-parameters;
* ``test_idx``  – the split that is reported, looked at once, after training.

Keeping indices instead of copies lets the feature cache key on the whole
dataset: changing the seed or the split reuses the cached features.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError

TASKS = ("binary", "multiclass", "multilabel", "regression")
MIN_PER_CLASS_FOR_VAL = 5  # below this, holding out examples for selection costs more than it tells


@dataclass
class Dataset:
    modality: str  # "image" or "text"
    classes: list[str]
    items: list[Any]  # decoded HxWxC uint8 arrays (images) or str (texts)
    y: np.ndarray  # int64 class ids [N] (binary/multiclass)
    refs: list[str]  # where each example came from: a path, or "file:row"
    keys: list[str]  # fingerprint material per example (path+size+mtime, or the text)
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    name: str = "data"
    task: str = "multiclass"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (ref, reason): unreadable files, unusable rows
    decided: dict[str, dict[str, str]] = field(default_factory=dict)  # what the reader chose (see data.Table)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """Identifies the examples (not the split): the feature-cache key part."""
        h = hashlib.sha256()
        h.update(self.modality.encode())
        for k in self.keys:
            h.update(k.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()[:20]

    def subset(self, idx: np.ndarray) -> tuple[list[Any], np.ndarray]:
        return [self.items[i] for i in idx], self.y[idx]

    def summary(self) -> dict[str, Any]:
        def counts(idx: np.ndarray) -> dict[str, int]:
            c = np.bincount(self.y[idx], minlength=self.num_classes)
            return {self.classes[i]: int(c[i]) for i in range(self.num_classes)}

        return {
            "name": self.name,
            "modality": self.modality,
            "task": self.task,
            "classes": list(self.classes),
            "n_train": int(len(self.train_idx)),
            "n_val": int(len(self.val_idx)),
            "n_test": int(len(self.test_idx)),
            "train_counts": counts(self.train_idx),
            "skipped": len(self.skipped),
            "decided": self.decided,
        }


def task_of(classes: list[str]) -> str:
    return "binary" if len(classes) == 2 else "multiclass"


def _number(s: str) -> float | None:
    try:
        f = float(s)
    except ValueError:
        return None
    return f if np.isfinite(f) else None


def normalise_table_labels(raw: list[str], refs: list[str], what: str) -> list[str]:
    """Labels read from a table: ``1`` and ``1.0`` are one class; numbers mixed with words are an error.

    A column where some rows hold numbers and others words is almost always a
    shifted or wrong column, not a real label set: stop and name one row of each kind.
    """
    nums = [_number(v) for v in raw]
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


def encode_labels(raw: list[str], refs: list[str], what: str) -> tuple[list[str], np.ndarray]:
    """Map label strings to ids; numbers sort numerically, names alphabetically."""
    uniq = sorted(set(raw))
    try:
        uniq = sorted(uniq, key=lambda s: float(s))
    except ValueError:
        pass
    if len(uniq) < 2:
        only = uniq[0] if uniq else "none"
        raise DataError(
            f"{what}: only one class ({only!r}) found; transfer learning for classification needs at least two "
            "labeled classes — add examples of another class"
        )
    index = {c: i for i, c in enumerate(uniq)}
    return uniq, np.array([index[v] for v in raw], dtype=np.int64)


def stratified_holdout(y: np.ndarray, idx: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (kept, held_out) with ``fraction`` of every class held out.

    A class with a single example stays entirely in ``kept``; every class with
    two or more keeps at least one example on each side.
    """
    kept, held = [], []
    for c in np.unique(y[idx]):
        members = idx[y[idx] == c].copy()
        rng.shuffle(members)
        n = len(members)
        k = int(round(fraction * n))
        k = min(max(k, 1 if n >= 2 and fraction > 0 else 0), n - 1)
        held.append(members[:k])
        kept.append(members[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def per_class_subset(y: np.ndarray, idx: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for c in np.unique(y[idx]):
        members = idx[y[idx] == c].copy()
        rng.shuffle(members)
        out.append(members[:per_class])
    return np.sort(np.concatenate(out))


def sized_subset(y: np.ndarray, idx: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A stratified sample of ``size`` examples of ``idx`` (all of them if fewer)."""
    if size >= len(idx):
        return idx
    _, held = stratified_holdout(y, idx, 1.0 - size / len(idx), rng)
    kept = np.setdiff1d(idx, held)
    return kept


def make_splits(
    y: np.ndarray,
    pool: np.ndarray,
    test: np.ndarray | None,
    val: np.ndarray | None,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    train_size: int | None = None,
    labels_per_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decide train/val/test indices from what the data layout provides.

    ``pool`` is the training part of the layout; ``test`` the part to report on
    (None: carve ``test_fraction`` of the pool first, so every budget is
    reported on the same examples). A label budget (``labels_per_class``,
    ``train_size``) is then drawn from the pool, and the selection split
    (``val``; None: ``val_fraction`` carved from the budget) comes out of that
    budget: with 8 labels per class there are 8 labeled examples in all, as
    for a user who has 8. When some class has fewer than `MIN_PER_CLASS_FOR_VAL`
    examples no selection split is carved; strategies then select by
    cross-validation or use their fixed schedule.
    """
    rng = np.random.default_rng(seed)
    if test is None:
        pool, test = stratified_holdout(y, pool, test_fraction, rng)
    if labels_per_class is not None:
        pool = per_class_subset(y, pool, labels_per_class, rng)
    if train_size is not None:
        pool = sized_subset(y, pool, train_size, rng)
    if val is None:
        smallest = np.bincount(y[pool]).astype(float)
        smallest = smallest[smallest > 0].min() if len(pool) else 0
        if val_fraction > 0 and smallest >= MIN_PER_CLASS_FOR_VAL:
            pool, val = stratified_holdout(y, pool, val_fraction, rng)
        else:
            val = pool[:0]
    return pool, val, test


def check_labels_in_train(ds: Dataset) -> None:
    """A label that appears only in val/test cannot be learned: say which and where."""
    seen = set(np.unique(ds.y[ds.train_idx]).tolist()) if len(ds.train_idx) else set()
    for part, idx in (("validation", ds.val_idx), ("test", ds.test_idx)):
        for i in idx:
            if int(ds.y[i]) not in seen:
                raise DataError(
                    f"{ds.refs[i]}: label {ds.classes[int(ds.y[i])]!r} appears in the {part} data but never in "
                    "training; add training examples of it or remove it from the evaluation data"
                )
