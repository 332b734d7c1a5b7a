"""Data: read image folders, text tables and built-ins into a split `Dataset`.

``load_data(source)`` accepts

* an image folder (``train/`` + ``val/``/``validation/`` (+ ``test/``), or one
  folder of class sub-folders);
* a table file (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``) of texts and labels;
* a built-in name: ``digits`` (scikit-learn's 8x8 digits, as images) or
  ``demo-text`` (``topics.csv`` beside this file: the small topic-classification set of `headstart demo`).

The reported split is the layout's ``test/`` (or ``--test`` data), else its
``val/`` folder, else a stratified ``test_fraction`` of the pool. The selection
split that chooses epochs and hyper-parameters is always separate from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import warn
from ..errors import DataError
from ..targets import get_task_type
from ._dataset import (
    AMBIGUOUS_INTEGERS,
    Dataset,
    check_labels_in_train,
    decide_target,
    make_splits,
    per_class_subset,
    stratified_holdout,
)
from ._leakage import NEAR_BITS, example_hashes, find_leaks, leak_summary, normalise_text, without_leaks
from ._targets import Target, check_targets, encode_targets, merge_datasets, strata_of
from ._episodes import Episode, draw_episode, eligible, episodes, mean_ci95, rows_by_class, split_classes
from ._images import (
    IMAGE_EXTENSIONS,
    STORE_FROM,
    TooManyPixels,
    _file_key as file_key,
    decode_image,
    is_image_file,
    list_image_folder,
    load_image_paths,
    read_images,
)
from ._store import Chain, ImageStore, store_entries, take
from ._tables import TABLE_EXTENSIONS, as_columns, read_image_list, read_table, read_texts

BUILTINS = ("digits", "demo-text")

__all__ = ["AMBIGUOUS_INTEGERS", "Dataset", "Target", "Episode", "draw_episode", "eligible", "episodes", "mean_ci95", "rows_by_class", "split_classes", "TooManyPixels", "load_data", "find_leaks", "leak_summary", "without_leaks", "example_hashes", "normalise_text", "NEAR_BITS", "make_splits", "decode_image", "demo_table_path", "file_key", "per_class_subset", "stratified_holdout", "load_image_paths", "read_image_list", "read_inputs", "read_texts", "read_table", "TABLE_EXTENSIONS", "BUILTINS", "is_image_file",
           "Chain", "ImageStore", "STORE_FROM", "store_entries", "take"]


def _finish(
    modality: str,
    name: str,
    items: list,
    labels: list[str],
    refs: list[str],
    keys: list[str],
    n_pool: int,
    n_val_given: int,
    n_test_given: int,
    skipped: list[tuple[str, str]],
    decided: dict[str, dict[str, str]],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    train_size: int | None,
    labels_per_class: int | None,
    where: str | None = None,
    task_type: str = "auto",
    label_sep: str | None = None,
    columns: list[str] | None = None,
    separate: bool = False,
    groups: list[str] | None = None,
) -> Dataset:
    """Decide the task, encode labels and decide splits. Items are ordered pool, given val, given test.

    ``where`` (the folder or file read) names the data in error messages. ``decided``: what the reader chose
    (columns, separator, ...: see `Table`); the task is added here (`decide_target`). ``columns``: the label
    columns of a table (None: class sub-folders).
    """
    where = where or name
    targets = {}
    if separate:  # every label column a task of its own (`multitask`)
        targets = encode_targets(labels, refs, where, columns or ["label"], task_type=task_type, label_sep=label_sep)
        task, classes, strata, how = "multitask", list(targets), strata_of(targets), {
            "value": ", ".join(f"{t.name}: {t.task}" for t in targets.values()), "how": "per label column", "flag": "--task-type"}
        y = strata
    else:
        task, classes, y, how = decide_target(labels, refs, where, task_type=task_type, label_sep=label_sep,
                                              columns=columns, folders=columns is None)
        strata = get_task_type(task).strata(y)
    if labels_per_class is not None and task == "regression":
        raise DataError(f"option --labels-per-class: {where} is a regression target, without classes; use --train-size")
    pool = np.arange(n_pool)
    val = np.arange(n_pool, n_pool + n_val_given) if n_val_given else None
    test = np.arange(n_pool + n_val_given, n_pool + n_val_given + n_test_given) if n_test_given else None
    if test is None and val is not None:  # train/ + val/ only: val/ is what we report on
        test, val = val, None
    if len(pool) == 0:
        raise DataError(f"{where}: no training examples found")
    group_ids = np.asarray(groups, dtype=object) if groups is not None else None
    train_idx, val_idx, test_idx = make_splits(
        strata, pool, test, val,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        train_size=train_size, labels_per_class=labels_per_class, groups=group_ids,
    )
    used = np.sort(np.concatenate([train_idx, val_idx, test_idx]))
    if len(used) < len(items):  # a budget left examples unused: drop them (feature extraction is per dataset)
        remap = np.full(len(items), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        items, y = take(items, used), y[used]
        refs, keys = take(refs, used), take(keys, used)
        targets = {k: dataclasses.replace(t, y=t.y[used]) for k, t in targets.items()}
        group_ids = group_ids[used] if group_ids is not None else None
        train_idx, val_idx, test_idx = remap[train_idx], remap[val_idx], remap[test_idx]
    decided = {**decided, "task": how}
    ds = Dataset(
        modality=modality, classes=classes, items=items, y=y, refs=refs, keys=keys,
        train_idx=train_idx, val_idx=val_idx, test_idx=test_idx, name=name,
        task=task, skipped=skipped, decided=decided, targets=targets, groups=group_ids,
    )
    (check_targets if targets else check_labels_in_train)(ds)
    return ds


def _load_images(root: Path, test: Path | None, strict: bool, **split_kw) -> Dataset:
    parts = list_image_folder(root)
    if test is not None:
        if "test" in parts:
            raise DataError(f"{root} already has a test/ folder; drop --test or remove it")
        given = list_image_folder(test)
        parts["test"] = given.get("pool") or given["train"]
    order = [parts.get("pool", []) + parts.get("train", []), parts.get("val", []), parts.get("test", [])]
    files = [p for part in order for p, _ in part]
    keys_all = [file_key(p) for p in files]
    items, skipped = read_images(files, strict, source=str(root), keys=keys_all)
    kept = items.rows
    ok = np.zeros(len(files), dtype=bool)
    ok[kept] = True
    labels = [lab for part in order for _, lab in part]
    labels, refs, keys = [labels[i] for i in kept], [str(files[i]) for i in kept], [keys_all[i] for i in kept]
    ends = np.cumsum([0] + [len(part) for part in order])
    counts = [int(ok[a:b].sum()) for a, b in zip(ends[:-1], ends[1:])]
    for cls in sorted({lab for _, lab in order[0]} - set(labels[: counts[0]])):
        raise DataError(f"{root}: every image of class {cls!r} was unreadable; fix or remove that class folder")
    decided = {"label": {"value": "class sub-folder names", "how": "folder layout", "flag": ""}}
    return _finish("image", root.name, items, labels, refs, keys, counts[0], counts[1], counts[2], skipped, decided,
                   where=str(root), **split_kw)


def _load_table(path: Path, test: Path | None, text_col: str | list[str] | None, label_col: str | list[str] | None,
                header: str, delimiter: str | None, strict: bool, separate: bool = False, group_col: str | None = None,
                **split_kw) -> Dataset:
    table = read_table(path, text_col, label_col, header, delimiter, strict, partial=separate, group_col=group_col)
    texts, labels, refs, skipped, groups = table.texts, table.labels, table.refs, table.skipped, table.groups
    n_test = 0
    if test is not None:  # its columns are detected on their own: SST-2's dev.tsv names them differently from train.tsv
        t2 = read_table(test, text_col, label_col, header, delimiter, strict, partial=separate, group_col=group_col)
        texts, labels, refs, skipped, n_test = texts + t2.texts, labels + t2.labels, refs + t2.refs, skipped + t2.skipped, len(t2.texts)
        groups = groups + t2.groups if groups is not None and t2.groups is not None else groups
    if image_column(texts, path):  # an image table: a column of image paths, relative to the table
        return _image_table(path, texts, labels, refs, skipped, len(texts) - n_test, table, strict, separate, groups,
                            **split_kw)
    pairs = len(as_columns(text_col)) == 2
    keys = [t if isinstance(t, str) else "\x1f".join(t) for t in texts] if pairs else texts  # a pair: both identify it
    return _finish("text", path.stem, texts, labels, refs, keys, len(texts) - n_test, 0, n_test, skipped,
                   table.decided, where=str(path), columns=table.label_columns, separate=separate, groups=groups, **split_kw)


def image_column(cells: list[Any], table: Path) -> bool:
    """Whether the column read as text names image files: every one of its first 20 cells has an image
    extension and the first exists (relative to the table's folder)."""
    head = [c for c in cells[:20] if isinstance(c, str)]
    if not head or len(head) < min(20, len(cells)) or any(Path(c).suffix.lower() not in IMAGE_EXTENSIONS for c in head):
        return False
    first = Path(head[0])
    return (first if first.is_absolute() else table.parent / first).is_file()


def _image_table(path: Path, cells: list[str], labels: list[Any], refs: list[str], skipped: list[tuple[str, str]],
                 n_pool: int, table: Any, strict: bool, separate: bool, groups: list[str] | None = None,
                 **split_kw: Any) -> Dataset:
    """Images named by a table (multilabel and regression images, or any labels): decoded once like a folder's,
    an unreadable or missing one skipped by the same policy (named by its table row)."""
    files = [Path(c) if Path(c).is_absolute() else path.parent / c for c in cells]
    missing = [(r, f"image {c!r} not found (paths are relative to the table's folder)") for r, c, f in zip(refs, cells, files)
               if not f.is_file()]
    if missing and strict:
        raise DataError(f"{missing[0][0]}: {missing[0][1]}")
    found = [i for i, f in enumerate(files) if f.is_file()]
    keys = {i: file_key(files[i]) for i in found}  # each file stat-ed once: for the store and for the data set
    store, bad = read_images([files[i] for i in found], strict, source=str(path), keys=[keys[i] for i in found])
    rows = [found[int(r)] for r in store.rows]  # table rows whose image was read
    why = dict(bad)
    kept = set(rows)
    skipped = skipped + missing + [(refs[i], why[str(files[i])]) for i in found if i not in kept]
    if not rows:
        raise DataError(f"{path}: none of its {len(cells)} images could be read (e.g. {skipped[0][0]}: {skipped[0][1]})")
    if missing or len(rows) < len(cells):
        warn(f"skipped {len(cells) - len(rows)} image(s) of {path} that are missing or unreadable: "
             + ", ".join(f"{r} ({w})" for r, w in skipped[:5]))
    column = table.decided.pop("text")  # the column read as text names the images: reported as such, once
    if column.get("how", "").startswith("detected"):
        column = {**column, "how": "detected: its cells name image files"}
    decided = {**table.decided, "image": {**column, "flag": "--text-col"}}
    return _finish("image", path.stem, store, [labels[i] for i in rows], [refs[i] for i in rows],
                   [keys[i] for i in rows], sum(1 for i in rows if i < n_pool), 0,
                   sum(1 for i in rows if i >= n_pool), skipped, decided, where=str(path), columns=table.label_columns,
                   separate=separate, groups=[groups[i] for i in rows] if groups is not None else None, **split_kw)


def demo_table_path() -> Path:
    """The built-in ``demo-text`` table: 216 short sentences in six topics, written for this project."""
    return Path(str(resources.files("headstart.data").joinpath("topics.csv")))


def _load_builtin(name: str, **split_kw) -> Dataset:
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        imgs = [np.repeat((img * 255.0 / 16.0).astype(np.uint8)[:, :, None], 3, axis=2) for img in d.images]
        labels = [str(int(t)) for t in d.target]
        refs = [f"digits[{i}]" for i in range(len(imgs))]
        keys = [f"sklearn-digits:{i}" for i in range(len(imgs))]
        decided = {"label": {"value": "the digit", "how": "built-in", "flag": ""}}
        return _finish("image", "digits", imgs, labels, refs, keys, len(imgs), 0, 0, [], decided, **split_kw)
    path = demo_table_path()
    return _load_table(path, None, "text", "label", "yes", None, True, **split_kw)


def load_data(
    source: str | Path,
    *,
    test: str | Path | None = None,
    text_col: str | list[str] | None = None,
    label_col: str | list[str] | None = None,
    task_type: str = "auto",
    label_sep: str | None = None,
    header: str = "auto",
    delimiter: str | None = None,
    strict: bool = False,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    train_size: int | None = None,
    labels_per_class: int | None = None,
    multitask: bool = False,
    tasks: dict[str, str] | None = None,
    group_col: str | None = None,
    dedupe: bool = False,
) -> Dataset:
    """Read data into a `Dataset`: its examples, labels and the three splits every command uses.

    The splits: *train*; *val*, the selection split that decides everything that is chosen; *test*, the
    reported split, scored once. Copies of reported examples on the training side are always looked for
    (exact, and near: perceptual hash, normalised text) and kept in ``Dataset.leakage``.

    Args:
        source: An image folder (class sub-folders, or ``train/`` and ``val/``/``test/``), a table
            (CSV, TSV, JSONL, JSON, Parquet; an image table names files relative to it) or a built-in name.
        test: A separate reported file or folder.
        text_col: The text column(s) of a table (two for a pair of texts); detected when None.
        label_col: The label column(s); several 0/1 columns make a multilabel target; detected when None.
        task_type: ``auto``, binary, multiclass, multilabel or regression.
        label_sep: The separator of several labels in one cell (``a|b``).
        header: Whether a table has a header row: ``auto``, ``yes``, ``no``.
        delimiter: A delimited table's separator (detected when None).
        strict: Make the first unreadable file or bad row an error instead of a skip with a warning.
        seed: The split's seed.
        val_fraction: The selection split's share of the training data.
        test_fraction: The reported split's share, when neither ``test`` nor a ``val/``/``test/`` folder gives one.
        train_size: Keep a stratified subset of this many training examples.
        labels_per_class: Keep this many labeled training examples per class.
        multitask: Every label column of a table is a task of its own.
        tasks: Several datasets (task name -> folder or table), each split as it would be alone, side by side;
            ``source`` is then not read.
        group_col: A table's column of groups, each group kept on one side of every split.
        dedupe: Drop the training and selection copies of reported examples.

    Returns:
        The `Dataset`.

    Raises:
        DataError: Unreadable or unusable data, named with the file, row or column and what to do.

    Examples:
        >>> from headstart import load_data
        >>> ds = load_data("demo-text")
        >>> ds.modality, ds.classes[:3], len(ds.train_idx), len(ds.val_idx), len(ds.test_idx)
        ('text', ['cooking', 'finance', 'health'], 150, 24, 42)
    """
    if tasks:  # each task's data checked (and deduplicated) on its own split, then side by side
        kw = dict(text_col=text_col, label_col=label_col, task_type=task_type, label_sep=label_sep, header=header,
                  delimiter=delimiter, strict=strict, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                  train_size=train_size, labels_per_class=labels_per_class, group_col=group_col, dedupe=dedupe)
        parts = {name: load_data(path, **kw) for name, path in tasks.items()}
        merged = merge_datasets(parts)
        found = [d.leakage or {} for d in parts.values()]
        merged.leakage = {k: sum(f.get(k, 0) for f in found) for k in ("exact", "near", "training_copies")} | {
            "groups": [g for f in found for g in f.get("groups", [])], "dropped": dedupe,
            "seconds": sum(f.get("seconds", 0.0) for f in found)}
        return merged

    def read() -> Dataset:
        split_kw = dict(
            task_type=task_type, label_sep=label_sep,
            seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
            train_size=train_size, labels_per_class=labels_per_class,
        )
        src = str(source)
        if group_col is not None and (src in BUILTINS and not Path(src).exists() or Path(src).is_dir()):
            raise DataError(f"option --group-col: {src} is not a table; groups are a column of a table (for images: a "
                            "table with a column of image paths and one of groups)")
        if src in BUILTINS and not Path(src).exists():
            if test is not None:
                raise DataError(f"--test cannot be combined with the built-in data {src!r}")
            return _load_builtin(src, **split_kw)
        p = Path(src).expanduser()
        test_p = Path(test).expanduser() if test is not None else None
        if not p.exists():
            raise DataError(f"{p}: no such file or folder (built-in data sets: {', '.join(BUILTINS)})")
        if multitask and (p.is_dir() or p.suffix.lower() not in TABLE_EXTENSIONS):
            raise DataError(f"{p}: several targets from one source need a table with several label columns; for image "
                            "folders give one dataset per task (--task NAME=FOLDER)")
        if p.is_dir():
            return _load_images(p, test_p, strict, **split_kw)
        if p.suffix.lower() in TABLE_EXTENSIONS:
            return _load_table(p, test_p, text_col, label_col, header, delimiter, strict, separate=multitask,
                               group_col=group_col, **split_kw)
        raise DataError(
            f"{p}: unsupported file type {p.suffix!r}; give an image folder or a table "
            f"({', '.join(sorted(TABLE_EXTENSIONS))})"
        )

    ds = read()
    leaks = find_leaks(ds)
    if leaks["groups"]:
        g = leaks["groups"][0]
        warn(f"{leaks['exact'] + leaks['near']} example(s) of the reported split have copies on the training side "
             f"({leaks['exact']} exact, {leaks['near']} near), e.g. {g['held_out']} = {g['training'][0]}: the held-out "
             + ("figure would be flattered; their training copies are dropped (--dedupe)" if dedupe else
                "figure is flattered; --dedupe drops the training copies, --group-col keeps related examples together"))
    if dedupe and leaks["training_positions"]:
        ds = without_leaks(ds, leaks)
        (check_targets if ds.targets else check_labels_in_train)(ds)
    ds.leakage = leak_summary(leaks, dedupe)
    return ds



def read_inputs(inputs: Any, modality: str, text_col: str | None = None) -> tuple[Sequence[Any], Sequence[str]]:
    """(examples, where each came from) for files, folders (searched recursively), tables, arrays or strings:
    what `predict` takes, and the unlabeled data of the strategies that read some."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    items: list[Any] = []
    refs: list[str] = []
    if modality == "image":
        paths: list[Path] = []
        named: set[str] = set()  # files the user named one by one: unreadable = an error, not a skip
        for x in inputs:
            if isinstance(x, np.ndarray):
                items.append(x)
                refs.append(f"array[{len(refs)}]")
                continue
            p = Path(x)
            if p.is_dir():
                paths.extend(sorted(q for q in p.rglob("*") if is_image_file(q)))
            elif p.is_file() and p.suffix.lower() in TABLE_EXTENSIONS:
                paths.extend(read_image_list(p))
            elif p.is_file():
                paths.append(p)
                named.add(str(p))
            else:
                raise DataError(f"{p}: no such image file or folder")
        arrays, prefs, skipped = load_image_paths(paths)
        for ref, why in skipped:
            if ref in named:
                raise DataError(f"{ref}: {why}; it cannot be predicted")
        if not arrays and not items:
            raise DataError(f"no readable image among the inputs ({len(skipped)} unreadable)")
        return (items + arrays if items else arrays), refs + prefs
    for x in inputs:
        p = Path(x) if isinstance(x, (str, Path)) and len(str(x)) < 4096 else None
        if p is not None and p.suffix.lower() in TABLE_EXTENSIONS and p.is_file():
            t, r = read_texts(p, text_col)
            if len(inputs) == 1:  # a large table comes as a text store: kept so, not copied into a list
                return t, r
            items.extend(t)
            refs.extend(r)
        elif isinstance(x, Path):
            raise DataError(f"{x}: no such file")
        else:
            items.append(str(x))
            refs.append(f"text[{len(refs)}]")
    return items, refs
