"""`linear`'s streamed head (a pool of features too large to copy in memory): the same answer as scikit-learn's
fit in memory, read a chunk at a time from the memory-mapped cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import headstart
from headstart.training.strategies import _streamed_head as streamed


def cached(tmp_path: Path, x: np.ndarray) -> np.ndarray:
    """``x`` as the feature cache holds it: a float32 .npy loaded memory-mapped."""
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    return np.load(tmp_path / "f.npy", mmap_mode="r")


def problem(n: int = 3000, d: int = 12, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + 2.0 + 0.8 * np.eye(k, d)[y] * 1.5
    return x, y


def no_floor(scale: np.ndarray) -> np.ndarray:
    return scale


@pytest.mark.parametrize("k", [2, 4])
def test_streamed_logistic_regression_is_sklearns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    """Same objective, same minimiser: from a zero start, reading 500 rows at a time, the standardisation and the
    weights match StandardScaler + LogisticRegression fitted on the pool in memory."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    monkeypatch.setattr(streamed, "CHUNK", 500)
    x, y = problem(k=k)
    feats = cached(tmp_path, x)
    pool = np.sort(np.random.default_rng(1).choice(len(x), 2200, replace=False))
    scaler = streamed.Standardiser(feats, pool, no_floor)
    ref = StandardScaler().fit(x[pool].astype(np.float32).astype(np.float64))
    assert np.allclose(scaler.mean_, ref.mean_) and np.allclose(scaler.scale_, ref.scale_)
    want = LogisticRegression(C=0.05, tol=1e-8, max_iter=5000).fit(ref.transform(x[pool].astype(np.float32)), y[pool])
    binary = k == 2
    width = 1 if binary else k
    coef, intercept = streamed.fit_logistic(feats, pool, (y[pool] == 1)[:, None].astype(float) if binary else y[pool],
                                            scaler, np.array([0.05]), np.zeros((width, x.shape[1])), np.zeros(width),
                                            tol=1e-8, multinomial=not binary)
    assert np.abs(coef - want.coef_).max() < 1e-3 * np.abs(want.coef_).max()
    assert np.allclose(intercept, want.intercept_, atol=1e-3)


def test_streamed_one_vs_rest_weighs_each_label_by_its_own_c(tmp_path: Path) -> None:
    """One problem per column, each at its own C; a column with C = 0 (one value in the pool) keeps its start."""
    from sklearn.linear_model import LogisticRegression

    x, y = problem(k=3)
    feats = cached(tmp_path, x)
    pool = np.arange(len(x))
    scaler = streamed.Standardiser(feats, pool, no_floor)
    labels = np.stack([y == 0, y == 2, np.zeros(len(y), bool)], 1).astype(float)
    c = np.array([0.02, 1.0, 0.0])
    start = np.array([0.0, 0.0, -9.0])
    coef, intercept = streamed.fit_logistic(feats, pool, labels, scaler, c, np.zeros((3, x.shape[1])), start,
                                            tol=1e-8, multinomial=False)
    xs = scaler.transform(x)
    for j in (0, 1):
        want = LogisticRegression(C=c[j], tol=1e-8, max_iter=5000).fit(xs, labels[:, j])
        assert np.abs(coef[j] - want.coef_[0]).max() < 1e-3 * np.abs(want.coef_).max()
    assert intercept[2] == -9.0 and not coef[2].any()


def test_streamed_ridge_is_sklearns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import Ridge

    monkeypatch.setattr(streamed, "CHUNK", 700)
    x, _ = problem()
    z = x @ np.linspace(-1, 1, x.shape[1]) + np.random.default_rng(3).normal(size=len(x))
    feats = cached(tmp_path, x)
    pool = np.arange(0, len(x), 2)
    scaler = streamed.Standardiser(feats, pool, no_floor)
    coef, intercept = streamed.fit_ridge(feats, pool, z[pool], scaler, alpha=30.0)
    want = Ridge(alpha=30.0).fit(scaler.transform(x[pool].astype(np.float32)), z[pool])
    assert np.allclose(coef[0], want.coef_, atol=1e-6) and np.allclose(intercept, want.intercept_, atol=1e-6)


def test_a_large_pool_chooses_c_on_a_sample_and_fits_every_example(text_csv: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `fit`: past the threshold, C comes from the sample's CV and the head is the whole pool's
    logistic regression at that C (what scikit-learn fits on the pool in memory), folded like a small pool's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from headstart.features import extract

    monkeypatch.setattr(streamed, "STREAM_VALUES", 100)
    monkeypatch.setattr(streamed, "SAMPLE_VALUES", 16 * 64)  # 16 examples of the bag-of-words' 64 features
    run = headstart.fit(text_csv, model="scratch:bow", strategy="linear", out="runs/lin", cv_folds=3)
    ds = headstart.load_data(text_csv)
    pool = np.concatenate([ds.train_idx, ds.val_idx])
    assert run.metrics["fit"]["head_sample"] == f"strength chosen on 20 of {len(pool)} examples, head fitted on all"
    feats, _ = extract(run.backbone, ds.items, ds.fingerprint())
    sc = StandardScaler().fit(feats[pool])
    sc.scale_ = np.maximum(sc.scale_, 1e-3 * np.median(sc.scale_))
    clf = LogisticRegression(C=run.metrics["fit"]["C"], tol=1e-6, max_iter=3000).fit(sc.transform(feats[pool]), ds.y[pool])
    ours = run.predict_proba([ds.items[i] for i in ds.test_idx])
    want = clf.predict_proba(sc.transform(feats[ds.test_idx]))
    assert np.abs(ours - want).max() < 0.005


def test_a_label_the_sample_missed_is_still_fitted_on_the_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Multilabel: a rare label with no positive in the sample (so no C from its CV) is fitted on the whole pool,
    not left at the sample's constant "never" answer."""
    rng = np.random.default_rng(0)
    rows = ["text,tags"]
    for i in range(240):
        common = ["red", "blue"][i % 2]
        rare = i % 60 == 7  # 4 rows of 240
        words = [common, *rng.choice(["x", "y", "z", "w"], 5)] + (["zebra"] * 3 if rare else [])
        rows.append(f"{' '.join(words)},{common}{'|rare' if rare else ''}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(streamed, "STREAM_VALUES", 100)
    monkeypatch.setattr(streamed, "SAMPLE_VALUES", 8 * 64)
    ds = headstart.load_data(tmp_path / "t.csv")
    pool = np.concatenate([ds.train_idx, ds.val_idx])
    rare = ds.classes.index("rare")
    part = streamed.sample(pool, None, 8, 0)
    assert ds.y[part, rare].sum() == 0 < ds.y[pool, rare].sum()  # the case: the sample has no positive of it
    run = headstart.fit(tmp_path / "t.csv", model="scratch:bow", strategy="linear", out=str(tmp_path / "run"))
    assert run.metrics["fit"]["C_per_label"][rare] == 1.0
    p = run.predict_proba(["red x y zebra zebra zebra", "blue x y z w w"])
    assert p[0, rare] > 0.5 > p[1, rare]
