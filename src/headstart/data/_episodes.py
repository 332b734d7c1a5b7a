"""Few-shot episodes: class splits and N-way K-shot sampling with Q queries.

An episode draws ``ways`` classes from a pool, then ``shots`` support and up to
``queries`` query examples of each, all distinct. Labels inside an episode are
0..ways-1 in the order the classes were drawn, so a model never learns a fixed
class id (Vinyals et al., NeurIPS 2016; Snell et al., NeurIPS 2017).

Reproducible: episode ``k`` of a list depends only on (seed, ways, shots,
queries, k) and the pool, so every method of `headstart fewshot` scores the very
same episodes, and a training episode drawn under the engine's per-step seed is
the same after a resume.

A class with fewer than ``shots + queries`` examples gives every example left
after its support as queries (TREC's rare fine classes); one with no example to
spare beyond its support cannot be in an episode and is left out of the pool,
which the caller reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Episode:
    """Dataset row indices and episode labels (0..ways-1) of one N-way K-shot task; ``classes`` are the
    dataset class ids drawn, in label order."""

    support: np.ndarray  # [ways * shots]
    support_y: np.ndarray
    query: np.ndarray  # [<= ways * queries]
    query_y: np.ndarray
    classes: np.ndarray  # [ways]


def split_classes(classes: list[str], ways: int, seed: int, split: str = "0.6,0.2,0.2",
                  test: list[str] | None = None, val: list[str] | None = None) -> dict[str, list[int]]:
    """Class ids for meta-train / meta-val / meta-test: the given lists, else ``split`` (fractions summing to 1,
    or counts) of a seeded shuffle. Meta-test and meta-train need at least ``ways`` classes each; a meta-val
    part smaller than ``ways`` is given to meta-train (selection then keeps the last epoch)."""
    n = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    if test is not None or val is not None:
        chosen: dict[str, list[int]] = {}
        for part, names in (("test", test or []), ("val", val or [])):
            unknown = [c for c in names if c not in index]
            if unknown:
                raise ConfigError(f"option --meta-{part}-classes: {', '.join(unknown)} not among the data's classes "
                                  f"({', '.join(classes[:12])}{' ...' if n > 12 else ''})")
            chosen[part] = [index[c] for c in names]
        if set(chosen["test"]) & set(chosen["val"]):
            raise ConfigError("options --meta-test-classes / --meta-val-classes: a class is in both; give disjoint lists")
        rest = [i for i in range(n) if i not in set(chosen["test"]) | set(chosen["val"])]
        parts = {"train": rest, "val": chosen["val"], "test": chosen["test"]}
    else:
        try:
            w = [float(v) for v in split.split(",")]
        except ValueError:
            w = []
        if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
            raise ConfigError(f"option --class-split: {split!r} must be three numbers, meta-train,meta-val,meta-test "
                              "(fractions such as 0.6,0.2,0.2 or class counts such as 5,0,5)")
        counts = [n * v / sum(w) for v in w]
        n_test, n_val = int(round(counts[2])), int(round(counts[1]))
        order = np.random.default_rng([seed % 2**32, 7]).permutation(n).tolist()
        parts = {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
                 "train": sorted(order[n_test + n_val:])}
    if 0 < len(parts["val"]) < ways:
        parts = {**parts, "train": sorted(parts["train"] + parts["val"]), "val": []}
    for part in ("train", "test"):
        if len(parts[part]) < ways:
            raise ConfigError(f"option --class-split: meta-{part} has {len(parts[part])} classes of {n}, fewer than "
                              f"--ways {ways}; give it more classes (--class-split) or lower --ways")
    return parts


def eligible(y: np.ndarray, pool: list[int], shots: int) -> tuple[list[int], list[int]]:
    """(classes of ``pool`` with at least one example beyond ``shots``, the ones left out)."""
    counts = np.bincount(y, minlength=max(pool) + 1 if pool else 0)
    keep = [c for c in pool if counts[c] > shots]
    return keep, [c for c in pool if counts[c] <= shots]


def draw_episode(rng: np.random.Generator, by_class: dict[int, np.ndarray], pool: list[int], ways: int, shots: int,
                 queries: int) -> Episode:
    """One episode from ``by_class`` (class id -> its row indices), classes drawn from ``pool``."""
    if len(pool) < ways:
        raise ConfigError(f"option --ways: {ways} classes per episode, but only {len(pool)} classes have more than "
                          f"--shots {shots} examples; lower --ways or --shots")
    chosen = rng.choice(np.asarray(pool), size=ways, replace=False)
    s, sy, q, qy = [], [], [], []
    for label, c in enumerate(chosen):
        rows = rng.permutation(by_class[int(c)])
        s.append(rows[:shots])
        q.append(rows[shots:shots + queries])
        sy.append(np.full(shots, label))
        qy.append(np.full(len(q[-1]), label))
    cat = np.concatenate
    return Episode(cat(s), cat(sy).astype(np.int64), cat(q), cat(qy).astype(np.int64), chosen.astype(np.int64))


def rows_by_class(y: np.ndarray, rows: np.ndarray, pool: list[int]) -> dict[int, np.ndarray]:
    return {c: rows[y[rows] == c] for c in pool}


def episodes(y: np.ndarray, rows: np.ndarray, pool: list[int], ways: int, shots: int, queries: int, n: int,
             seed: int) -> list[Episode]:
    """``n`` episodes over ``rows`` of the classes in ``pool``; episode k is seeded by (seed, ways, shots,
    queries, k), so it does not depend on how many were asked for."""
    keep, _ = eligible(y[rows], pool, shots) if len(rows) else ([], pool)
    by_class = rows_by_class(y, rows, keep)
    return [draw_episode(np.random.default_rng([seed % 2**32, ways, shots, queries, k]), by_class, keep, ways, shots,
                         queries) for k in range(n)]


def mean_ci95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (normal approximation, 1.96 standard errors),
    as few-shot papers report over test episodes."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()) if len(v) else math.nan, math.nan
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(len(v)))


__all__ = ["Episode", "draw_episode", "eligible", "episodes", "mean_ci95", "rows_by_class", "split_classes"]
