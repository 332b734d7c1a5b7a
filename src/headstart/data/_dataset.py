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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import TASK_TYPES
from ..errors import DataError
from ..targets import get_task_type, truthy
from ..targets.classes import number
from ._store import ImageStore, take

TASKS = ("binary", "multiclass", "multilabel", "regression")
MIN_PER_CLASS_FOR_VAL = 5  # below this, holding out examples for selection costs more than it tells


@dataclass
class Dataset:
    """Examples, their labels and the three splits (`load_data` makes one).

    ``train_idx`` fits, ``val_idx`` (the selection split) decides what is chosen, ``test_idx`` (the reported
    split) is scored once. ``items`` are decoded images (HxWxC uint8 arrays) or texts; ``y`` the encoded
    labels; ``refs`` where each example came from; ``skipped`` what could not be read, and why.

    Examples:
        >>> from headstart import load_data
        >>> ds = load_data("demo-text")
        >>> ds.items[0], ds.classes[ds.y[0]]
        ('The striker curled a free kick into the top corner in the final minute.', 'sport')
    """

    modality: str  # "image" or "text"
    classes: list[str]  # class names; label names (multilabel); target names (regression)
    items: Sequence[Any]  # decoded HxWxC uint8 arrays (an `ImageStore` for folders and image tables) or str (texts)
    y: np.ndarray  # int64 class ids [N]; float32 [N, C] 0/1 (multilabel) or [N, T] values (regression)
    refs: list[str]  # where each example came from: a path, or "file:row"
    keys: list[str]  # fingerprint material per example (path+size+mtime, or the text)
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    name: str = "data"
    task: str = "multiclass"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (ref, reason): unreadable files, unusable rows
    decided: dict[str, dict[str, str]] = field(default_factory=dict)  # what the reader chose (see data.Table)
    # several targets (`multitask`: task "multitask", ``classes`` the task names, ``y`` the split strata)
    targets: dict[str, Any] = field(default_factory=dict)
    # ``--group-col``: a group per example (str); splits and cross-validation folds keep each group on one side
    groups: np.ndarray | None = None
    # what `data.find_leaks` found when the data was read (copies across the training and reported splits)
    leakage: dict[str, Any] | None = None
    # each example's fingerprints for the leakage check (`data._leakage.example_hashes`), computed once
    hashes: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS and not (self.task == "multitask" and self.targets):
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

    def take(self, idx: np.ndarray) -> Sequence[Any]:
        """The examples at ``idx``: a view of an image store (nothing read until used), else a list."""
        return take(self.items, idx)

    def subset(self, idx: np.ndarray) -> tuple[Sequence[Any], np.ndarray]:
        return self.take(idx), self.y[idx]

    @property
    def kind(self) -> Any:
        """The task type (`headstart.targets`): what a label is, and its loss, metrics and splits."""
        return get_task_type(self.task)

    def strata(self) -> np.ndarray:
        """An int group per example for stratified splits: the class, the rarest label, the value's quintile
        (several targets: ``y`` already holds them)."""
        return self.y if self.targets else self.kind.strata(self.y)

    def summary(self) -> dict[str, Any]:
        def counts(idx: np.ndarray) -> dict[str, Any]:
            if self.targets:
                return {name: t.summary(idx) for name, t in self.targets.items()}
            return self.kind.counts(self.y, idx, self.classes)

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
            **({"leakage": self.leakage} if self.leakage is not None else {}),
        }

    def stats(self) -> dict[str, Any]:
        """What a report shows of the data: examples per class (positives per label) and split, image sizes as read
        (longest side capped at decoding) or text lengths in words, as min / median / 95th percentile / max."""
        out: dict[str, Any] = {}
        if not self.targets:  # examples per class, or positives per label; a regression target has no counts
            parts = {"train": self.train_idx, "selection": self.val_idx, "held_out": self.test_idx}
            counts = {k: self.kind.counts(self.y, idx, self.classes) for k, idx in parts.items()}
            if all(isinstance(v, int) for v in counts["train"].values()):
                out["balance"] = {c: {k: v[c] for k, v in counts.items()} for c in self.classes}

        def quantiles(name: str, values: np.ndarray) -> dict[str, Any]:
            q = np.percentile(values, [0, 50, 95, 100])
            return {"measure": name, "min": int(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": int(q[3])}

        if isinstance(self.items, ImageStore):
            hw = self.items.shapes()
            out["image_size"] = [quantiles("height", hw[:, 0]), quantiles("width", hw[:, 1])]
        elif self.items and isinstance(self.items[0], np.ndarray):
            hw = np.array([a.shape[:2] for a in self.items])
            out["image_size"] = [quantiles("height", hw[:, 0]), quantiles("width", hw[:, 1])]
        elif self.items:
            words = np.array([len((x if isinstance(x, str) else " ".join(x)).split()) for x in self.items])
            out["text_words"] = [quantiles("words", words)]
        return out


AMBIGUOUS_INTEGERS = 20  # more distinct integers than this: classes or values? `--task-type` decides


def _decided(task: str, how: str) -> dict[str, str]:
    return {"value": task, "how": how, "flag": "--task-type"}


def _several(raw: list[tuple[Any, ...]], refs: list[str], where: str, task_type: str,
             columns: list[str]) -> tuple[str, list[str], np.ndarray, dict[str, str]]:
    """Several label columns: one multilabel target of 0/1 columns, or several regression values."""
    if task_type == "regression":
        names, y = get_task_type("regression").encode(raw, refs, where, names=columns)
        return "regression", names, y, _decided("regression", "given")
    if task_type not in ("auto", "multilabel"):
        raise DataError(f"{where}: {len(columns)} label columns ({', '.join(columns)}) make one multilabel target of 0/1 "
                        f"columns, or several regression values, not a {task_type} target: give one --label-col for classes")
    lists = []
    for row, ref in zip(raw, refs):
        on = []
        for col, cell in zip(columns, row):
            flag = truthy(cell)
            if flag is None:
                raise DataError(f"{ref}: {str(cell)[:40]!r} in label column {col!r} is not 0 or 1; several --label-col make "
                                "one multilabel target of 0/1 columns (--task-type regression: several numeric targets)")
            if flag:
                on.append(col)
        lists.append(on)
    names, y = get_task_type("multilabel").encode(lists, refs, where, names=columns)
    return "multilabel", names, y, _decided("multilabel", "given" if task_type == "multilabel" else "detected: several 0/1 label columns")


def _looks_multilabel(cells: list[Any]) -> str | None:
    """Why a single label column holds sets of labels (JSON lists, or separated labels), else None."""
    texts = [c for c in cells if isinstance(c, str)]
    if len(texts) < len(cells) or any(t.startswith("[") and t.endswith("]") for t in texts):
        return "lists of labels"
    if any("|" in t for t in texts):
        return "'|'-separated labels"
    for sep in (",", ";"):  # a set of labels reuses a few pieces; a class name with a comma in it does not
        if any(sep in t for t in texts):
            pieces = {p.strip() for t in texts for p in t.split(sep)}
            if "" not in pieces and len(pieces) < len(set(texts)):
                return f"'{sep}'-separated labels"
    return None


def decide_target(raw: list[Any], refs: list[str], where: str, *, task_type: str = "auto", label_sep: str | None = None,
                  columns: list[str] | None = None, folders: bool = False) -> tuple[str, list[str], np.ndarray, dict[str, str]]:
    """(task, names, y, how it was decided) for the label cells of a table or the class folders of images.

    ``auto``: several label columns are a multilabel target of 0/1 columns; a column of lists or separated
    labels (``|``; ``,`` or ``;`` when the pieces repeat across rows) is multilabel; a column of numbers
    with some non-integer is regression; integers are classes, unless there are more than
    `AMBIGUOUS_INTEGERS` distinct ones: then ``--task-type`` must say which. Anything else is classes:
    binary for two, multiclass for more. A given ``task_type`` is used as it is.
    """
    if task_type not in TASK_TYPES:
        raise DataError(f"option --task-type: {task_type!r} is not one of {', '.join(TASK_TYPES)}")
    columns = columns or ["label"]
    if folders and task_type not in ("auto", "binary", "multiclass"):
        raise DataError(f"{where}: an image folder gives one class per image (its sub-folder); a {task_type} target "
                        "needs an image table: a CSV with an image-path column and the label column(s)")
    if raw and isinstance(raw[0], tuple):
        return _several(raw, refs, where, task_type, columns)
    how = "given"
    if task_type == "auto" and not folders:
        why = "a given separator" if label_sep else _looks_multilabel(raw)
        if why:
            task_type, how = "multilabel", f"detected: {why}"
        else:
            nums = [number(str(v)) for v in raw]
            if raw and all(n is not None for n in nums):
                if any(not n.is_integer() for n in nums):  # type: ignore[union-attr]
                    task_type, how = "regression", "detected: non-integer numbers"
                elif len(set(nums)) > AMBIGUOUS_INTEGERS:
                    raise DataError(f"{where}: the label column {columns[0]!r} holds {len(set(nums))} distinct integers: "
                                    "class ids or values? give --task-type multiclass or --task-type regression")
    if task_type in ("multilabel", "regression"):
        names, y = get_task_type(task_type).encode(raw, refs, where, sep=label_sep, names=columns if task_type == "regression" else None)
        return task_type, names, y, _decided(task_type, how)
    names, y = get_task_type("multiclass").encode(raw, refs, where)
    if task_type == "binary" and len(names) != 2:
        raise DataError(f"{where}: --task-type binary needs two classes, found {len(names)} ({', '.join(names[:5])}, ...)")
    task = task_type if task_type != "auto" else ("binary" if len(names) == 2 else "multiclass")
    return task, names, y, _decided(task, how if task_type != "auto" else f"detected: {len(names)} classes")


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


def grouped_holdout(y: np.ndarray, idx: np.ndarray, groups: np.ndarray, fraction: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (kept, held_out), about ``fraction`` held out, every group wholly on one side and the
    classes as balanced as the groups allow: the first fold of scikit-learn's ``StratifiedGroupKFold`` with
    round(1 / fraction) folds."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups[idx]))
    if fraction <= 0 or n_groups < 2:
        return idx, idx[:0]
    k = min(n_groups, max(2, int(round(1.0 / fraction))))
    splitter = StratifiedGroupKFold(k, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
    with warnings.catch_warnings():  # "the least populated class has fewer members than n_splits": expected here
        warnings.simplefilter("ignore", UserWarning)
        kept, held = next(splitter.split(np.zeros(len(idx)), y[idx], groups[idx]))
    return np.sort(idx[kept]), np.sort(idx[held])


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
    groups: np.ndarray | None = None,
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
    cross-validation or use their fixed schedule. ``groups`` (one per example): the carved splits keep every
    group on one side (`grouped_holdout`).
    """
    rng = np.random.default_rng(seed)

    def holdout(idx: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        if groups is not None:
            return grouped_holdout(y, idx, groups, fraction, rng)
        return stratified_holdout(y, idx, fraction, rng)

    if test is None:
        pool, test = holdout(pool, test_fraction)
    if labels_per_class is not None:
        pool = per_class_subset(y, pool, labels_per_class, rng)
    if train_size is not None:
        pool = sized_subset(y, pool, train_size, rng)
    if val is None:
        smallest = np.bincount(y[pool]).astype(float)
        smallest = smallest[smallest > 0].min() if len(pool) else 0
        if val_fraction > 0 and smallest >= MIN_PER_CLASS_FOR_VAL:
            pool, val = holdout(pool, val_fraction)
        else:
            val = pool[:0]
    return pool, val, test


def check_labels_in_train(ds: Dataset) -> None:
    """A label that appears only in val/test cannot be learned: say which and where."""
    for part, idx in (("validation", ds.val_idx), ("test", ds.test_idx)):
        found = ds.kind.unseen(ds.y, ds.train_idx, idx)
        if found is not None:
            i, c = found
            raise DataError(
                f"{ds.refs[i]}: label {ds.classes[c]!r} appears in the {part} data but never in "
                "training; add training examples of it or remove it from the evaluation data"
            )
