"""The split code, on its own: every class on both sides, the sizes it promises, the same examples for every budget."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.data._dataset import MIN_PER_CLASS_FOR_VAL, make_splits, per_class_subset, sized_subset, stratified_holdout

# class 0: 20 examples, class 1: 7, class 2: 2, class 3: 1
Y = np.array([0] * 20 + [1] * 7 + [2] * 2 + [3] * 1)
ALL = np.arange(len(Y))


def _per_class(y: np.ndarray, idx: np.ndarray) -> list[int]:
    return np.bincount(y[idx], minlength=4).tolist()


@pytest.mark.parametrize("fraction,held", [(0.25, [5, 2, 1, 0]), (0.5, [10, 4, 1, 0]), (0.01, [1, 1, 1, 0]),
                                           (0.0, [0, 0, 0, 0]), (0.99, [19, 6, 1, 0])])
def test_stratified_holdout_sizes_per_class(fraction: float, held: list[int]) -> None:
    """round(fraction * n) of each class, at least one of a class with two or more (fraction > 0), never all of it."""
    kept, out = stratified_holdout(Y, ALL, fraction, np.random.default_rng(0))
    assert _per_class(Y, out) == held
    assert _per_class(Y, kept) == [n - h for n, h in zip([20, 7, 2, 1], held)]
    assert sorted(np.concatenate([kept, out]).tolist()) == ALL.tolist()  # a partition
    assert kept.tolist() == sorted(kept.tolist()) and out.tolist() == sorted(out.tolist())


def test_stratified_holdout_is_seeded_and_random_within_classes() -> None:
    a = stratified_holdout(Y, ALL, 0.3, np.random.default_rng(1))[1]
    b = stratified_holdout(Y, ALL, 0.3, np.random.default_rng(1))[1]
    c = stratified_holdout(Y, ALL, 0.3, np.random.default_rng(2))[1]
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    # only the given indices are split
    part = ALL[::2]
    kept, out = stratified_holdout(Y, part, 0.5, np.random.default_rng(0))
    assert set(kept) | set(out) == set(part)


def test_per_class_subset_takes_up_to_k_of_each_class() -> None:
    for k, want in ((3, [3, 3, 2, 1]), (1, [1, 1, 1, 1]), (50, [20, 7, 2, 1])):
        sub = per_class_subset(Y, ALL, k, np.random.default_rng(0))
        assert _per_class(Y, sub) == want and sub.tolist() == sorted(set(sub.tolist()))
    first = per_class_subset(Y, ALL, 3, np.random.default_rng(0))
    assert first.tolist() != per_class_subset(Y, ALL, 3, np.random.default_rng(5)).tolist()  # a random draw


def test_sized_subset_is_a_stratified_sample_of_that_size() -> None:
    assert sized_subset(Y, ALL, 30, np.random.default_rng(0)) is ALL  # asking for all of it (or more) returns all
    assert sized_subset(Y, ALL, 31, np.random.default_rng(0)) is ALL
    sub = sized_subset(Y, ALL, 15, np.random.default_rng(0))
    assert abs(len(sub) - 15) <= 2 and set(sub) <= set(ALL.tolist())
    assert _per_class(Y, sub)[0] == 10 and _per_class(Y, sub)[1] in (3, 4)  # the classes keep their shares


def test_make_splits_reports_every_budget_on_the_same_examples() -> None:
    y = np.repeat(np.arange(3), 30)
    pool = np.arange(len(y))
    full = make_splits(y, pool, None, None, val_fraction=0.2, test_fraction=0.25, seed=3)
    few = make_splits(y, pool, None, None, val_fraction=0.2, test_fraction=0.25, seed=3, labels_per_class=8)
    sized = make_splits(y, pool, None, None, val_fraction=0.2, test_fraction=0.25, seed=3, train_size=30)
    assert full[2].tolist() == few[2].tolist() == sized[2].tolist()  # the reported split depends on the seed only
    assert np.bincount(y[full[2]]).tolist() == [8, 8, 8]  # round(0.25 * 30) per class
    train, val, test = full
    assert np.bincount(y[val]).tolist() == [4, 4, 4] and np.bincount(y[train]).tolist() == [18, 18, 18]
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
    # 8 labels per class in all: the selection split comes out of them
    tr, va, _ = few
    assert (np.bincount(y[tr]) + np.bincount(y[va], minlength=3)).tolist() == [8, 8, 8]
    assert np.bincount(y[va]).tolist() == [2, 2, 2]
    tr, va, _ = sized
    assert len(tr) + len(va) == 30
    other_seed = make_splits(y, pool, None, None, val_fraction=0.2, test_fraction=0.25, seed=4)
    assert other_seed[2].tolist() != full[2].tolist()


def test_make_splits_keeps_given_parts_and_skips_a_too_small_selection_split() -> None:
    y = np.repeat(np.arange(2), 10)
    pool, test, val = np.arange(0, 16), np.arange(16, 20), None
    train, val, got_test = make_splits(y, pool, test, val, val_fraction=0.2, test_fraction=0.3, seed=0)
    assert got_test.tolist() == test.tolist()
    given_val = np.array([3, 12])
    train, val, _ = make_splits(y, pool, test, given_val, val_fraction=0.2, test_fraction=0.3, seed=0)
    assert val.tolist() == [3, 12] and len(train) == len(pool)
    # fewer than MIN_PER_CLASS_FOR_VAL examples in some class: no selection split at all
    small = MIN_PER_CLASS_FOR_VAL - 1
    y2 = np.r_[np.zeros(30, int), np.ones(small, int)]
    train, val, _ = make_splits(y2, np.arange(len(y2)), np.array([], int), None, val_fraction=0.3, test_fraction=0.2, seed=0)
    assert len(val) == 0 and len(train) == len(y2)
    y3 = np.r_[np.zeros(30, int), np.ones(MIN_PER_CLASS_FOR_VAL, int)]
    train, val, _ = make_splits(y3, np.arange(len(y3)), np.array([], int), None, val_fraction=0.3, test_fraction=0.2, seed=0)
    assert np.bincount(y3[val]).tolist() == [9, 2]
    train, val, _ = make_splits(y3, np.arange(len(y3)), np.array([], int), None, val_fraction=0.0, test_fraction=0.2, seed=0)
    assert len(val) == 0
