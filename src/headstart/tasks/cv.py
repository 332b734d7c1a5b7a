"""``--cv K``: K-fold cross-validation of a whole fit, on the training part only.

With a few hundred examples one split misleads: the figure moves by points between splits. ``--cv K`` splits
the training part (training + selection examples; the reported split, given or carved, stays out of every
fold) into K folds, stratified by the task's strata, and grouped by ``--group-col`` when given (scikit-learn's
``StratifiedKFold`` / ``StratifiedGroupKFold``). Fold j trains on the other K-1 folds, carves its own
selection split from them as a fit does, and is scored on fold j. Each fold is a complete fit through the
pipeline (any strategy, ``--seeds`` included) in ``<out>/folds/fold-J``, kept without its weights.

The run folder itself holds the fit on the whole training part, as without ``--cv``, scored once on the
reported split; its metrics.json gains ``cv``: every fold's figures, and per figure the mean, the standard
deviation and the 95% interval of the mean (Student's t). ``--test-fraction 0`` (data without a test part)
puts every example in the folds: the folds are then the only estimate. An interrupted ``--cv`` run resumes
fold by fold under ``--resume``.

The pipeline (``tasks/fit.py``) runs the fits; this module decides the folds and summarises them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._progress import info
from ..config import FitConfig
from ..data import Dataset
from ..errors import ConfigError, DataError
from ..evaluate import spread


def folds(ds: Dataset, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training, scored) example indices of each of ``k`` folds of ``ds``'s training part."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    pool = np.sort(np.concatenate([ds.train_idx, ds.val_idx]))
    strata = ds.strata()[pool]
    if ds.groups is not None:
        n_groups = len(np.unique(ds.groups[pool]))
        if n_groups < k:
            raise ConfigError(f"option --cv: {k} folds need at least {k} groups; the training part has {n_groups}")
        splitter: Any = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        groups = ds.groups[pool]
    else:
        smallest = int(np.bincount(strata).min(initial=len(pool)))
        if len(pool) < k:
            raise ConfigError(f"option --cv: {k} folds need at least {k} training examples; there are {len(pool)}")
        if smallest < k:
            info(f"--cv {k}: the rarest class has {smallest} training example(s), so some folds score none of it")
        splitter, groups = StratifiedKFold(k, shuffle=True, random_state=seed), None
    with warnings.catch_warnings():  # a class rarer than k: said above, in words
        warnings.simplefilter("ignore", UserWarning)
        return [(pool[a], pool[b]) for a, b in splitter.split(np.zeros(len(pool)), strata, groups)]


def fold_dataset(ds: Dataset, train: np.ndarray, scored: np.ndarray, cfg: FitConfig, j: int) -> Dataset:
    """``ds`` split for fold ``j``: scored on ``scored``; a selection split carved from ``train`` as a fit would.
    Copies across the fold's sides are counted, and dropped from its training side under ``--dedupe``."""
    from ..data import find_leaks, leak_summary, make_splits, without_leaks

    rng_seed = cfg.seed + 1000 * (j + 1)
    strata = ds.strata()
    tr, val, _ = make_splits(strata, train, scored, None, val_fraction=cfg.val_fraction if len(ds.val_idx) else 0.0,
                             test_fraction=cfg.test_fraction, seed=rng_seed, groups=ds.groups)
    fold = dataclasses.replace(ds, train_idx=tr, val_idx=val, test_idx=scored)
    leaks = find_leaks(fold)  # copies across this fold's sides (the hashes are the dataset's, made once)
    if cfg.dedupe and leaks["training_positions"]:
        fold = without_leaks(fold, leaks)
    fold.leakage = leak_summary(leaks, cfg.dedupe)
    unseen = ds.kind.unseen(ds.y, tr, scored) if not ds.targets else None
    if unseen is not None:
        i, c = unseen
        raise DataError(f"option --cv: fold {j + 1} scores class {ds.classes[c]!r} ({ds.refs[i]}) that none of its "
                        "training examples has; use fewer folds, or more examples of that class")
    return fold


def fold_row(j: int, n_train: int, m: dict[str, Any]) -> dict[str, Any]:
    """A fold's figures: its score and the task's headline figures on the fold it scored."""
    t = m.get("test", {})
    keep = {k: v for k, v in t.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"}
    leak = m.get("data", {}).get("leakage") or {}
    return {"fold": j + 1, "n_train": n_train, "n_scored": t.get("n"), "copies": leak.get("exact", 0) + leak.get("near", 0),
            "score_name": t.get("score_name"), **keep}


def summarise(rows: list[dict[str, Any]], k: int, grouped: bool) -> dict[str, Any]:
    """Every fold's row and, per figure, mean, std and the 95% interval of the mean."""
    names = [c for c in rows[0] if c not in ("fold", "n_train", "n_scored", "copies", "score_name")]
    figures = {c: spread([r[c] for r in rows if isinstance(r.get(c), (int, float))]) for c in names}
    return {"k": k, "grouped": grouped, "on": "the training part (the reported split is in no fold)",
            "score_name": rows[0].get("score_name"), "rows": rows,
            "figures": {c: v for c, v in figures.items() if v["n"] == len(rows)}}


def add_to_report(metrics: dict[str, Any], k: int) -> None:
    """The run's summary rows and report section for the folds."""
    cv = metrics["cv"]
    s = cv["figures"].get("score")
    report = metrics.setdefault("report", {"summary": [], "sections": []})
    if s:
        name = str(cv.get("score_name") or "score").replace("_", " ")
        report["summary"] = report.get("summary", []) + [
            [f"{k}-fold CV {name}", f"{s['mean']:.4f} ± {s['std']:.4f} (95% interval {s['ci95_low']:.4f} to "
                                    f"{s['ci95_high']:.4f})"]]
    cols = ["fold", "n_train", "n_scored", "copies", *(c for c in cv["figures"] if c != "score")]
    report.setdefault("sections", []).append({
        "title": f"Cross-validation ({k} folds{', grouped' if cv['grouped'] else ''})",
        "columns": [c.replace("_", " ") for c in cols],
        "rows": [[r.get(c) for c in cols] for r in cv["rows"]]
        + [["mean ± std", "", "", "", *(f"{v['mean']:.4f} ± {v['std']:.4f}" for c, v in cv["figures"].items() if c != "score")]],
        "note": "each fold trained on the other folds (with its own selection split) and scored on its own; the reported "
                "split is in no fold. Copies: scored examples with a copy on the fold's training side (--dedupe drops them). Fold runs: folds/fold-J (metrics, history; no weights)."})


__all__ = ["add_to_report", "fold_dataset", "fold_row", "folds", "summarise"]
