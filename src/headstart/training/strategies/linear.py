"""``linear``: feature extraction. Frozen backbone, cached features, a linear head.

The head is an L2-regularised logistic regression fitted with L-BFGS on
standardised features (scikit-learn); one per label for a multilabel target
(one-vs-rest), and ridge regression for a regression target. Its strength
(C, or ridge's alpha) is chosen by cross-validation (stratified k-fold on
log-loss; ridge: efficient leave-one-out) on the training + selection data
only, never on the reported split. The fitted scaler is folded into the head's weights, so
the saved model is an ordinary backbone + ``nn.Linear`` and predicts without
scikit-learn. A pool of more than 8M feature values (16,000 examples of 512 features) is fitted streaming
instead (`_streamed_head`): the strength chosen by the same CV on a sample, the head then fitted to that
strength on every example, a chunk of the cached features at a time, so that memory does not grow with the data.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ... import _progress
from ..protocol import FitContext
from . import _streamed_head as streamed
from ._base import Outcome, Strategy, register_strategy

C_GRID = np.logspace(-4, 2, 13)
ALPHA_GRID = np.logspace(-2, 5, 15)  # ridge strengths (regression), on standardised features and target
# L-BFGS stops when the gradient is this small. sklearn's 1e-4 costs ~2.3x the time of 1e-3 on 10-class
# sign-language digits and chose the same C, on hymenoptera too: the grid steps C by 3.2x, far coarser
# than what the looser optimum moves (docs/design-notes.md, "Speed").
TOL = 1e-3


@register_strategy
class Linear(Strategy):
    name = "linear"
    summary = "frozen backbone, cached features, logistic regression (C by cross-validation)"
    trains = False
    fits_selection_split = True  # the CV pool is train + selection; the CV score is its selection result
    # Average+max pooled frozen features lifted the probe by 3.3 points on hymenoptera and 1.5 on sign-language
    # digits (MobileNetV1 x0.25) for the same single forward pass (docs/design-notes.md, "Speed").
    pool = "avgmax"
    compared_by_default = True

    def prepare(self, ctx: FitContext) -> None:
        import torch
        from sklearn.preprocessing import StandardScaler

        from ...features import extract, read_rows

        feats, info = extract(ctx.backbone, ctx.data.items, ctx.data.fingerprint(), ctx.cache_dir, batch_size=max(64, self.cfg.batch_size),
                              source=self.cfg.data)
        ctx.features = feats
        ctx.info["features_cached"] = info["cached"]
        ctx.info["feature_seconds"] = round(info["seconds"], 3)
        pool = np.concatenate([ctx.data.train_idx, ctx.data.val_idx]) if self.fits_selection_split else ctx.data.train_idx
        t0 = time.perf_counter()
        if streamed.streams(len(pool), feats.shape[1]):
            scaler, coef, intercept = self._fit_streamed(feats, pool, ctx)
        else:
            X = read_rows(feats, pool).astype(np.float64)
            scaler = StandardScaler().fit(X)
            scaler.scale_ = _floored(scaler.scale_)
            coef, intercept = self._fit(scaler.transform(X), ctx.data.y[pool], ctx)
        ctx.info["head_fit_seconds"] = round(time.perf_counter() - t0, 3)
        # Fold the standardisation into the linear layer: w' = w / sigma, b' = b - w' . mu
        w = coef / scaler.scale_[None, :]
        b = intercept - w @ scaler.mean_
        with torch.no_grad():
            ctx.head.fc.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            ctx.head.fc.bias.copy_(torch.as_tensor(b, dtype=torch.float32))

    def _fit(self, X: np.ndarray, y: np.ndarray, ctx: FitContext) -> tuple[np.ndarray, np.ndarray]:
        """The head on standardised ``X`` in memory, its strength by cross-validation: (coef [K, D], intercept [K])."""
        fit = {"multilabel": self._fit_labels, "regression": self._fit_values}.get(ctx.data.task, self._fit_classes)
        return fit(X, y, ctx)

    def _fit_streamed(self, feats: np.ndarray, pool: np.ndarray, ctx: FitContext) -> tuple[Any, np.ndarray, np.ndarray]:
        """The head on a pool too large for `_fit` (see `_streamed_head`): the strength by the same CV on a
        sample, then the head at that strength on every example of the pool. (scaler, coef, intercept)."""
        from ...features import read_rows

        task, y = ctx.data.task, ctx.data.y[pool]
        scaler = streamed.Standardiser(feats, pool, _floored)
        by_class = task not in ("multilabel", "regression")
        part = streamed.sample(pool, y if by_class else None, streamed.SAMPLE_VALUES // feats.shape[1], self.cfg.seed)
        coef, intercept = self._fit(scaler.transform(read_rows(feats, part)), ctx.data.y[part], ctx)
        ctx.info["head_sample"] = f"strength chosen on {len(part)} of {len(pool)} examples, head fitted on all"
        if task == "regression":
            z = (y - ctx.head.target_mean.numpy()) / ctx.head.target_std.numpy()
            return scaler, *streamed.fit_ridge(feats, pool, z, scaler, ctx.info["alpha"])
        if task == "multilabel":
            # a label constant in the whole pool keeps its constant answer (C = 0); one constant only in the sample
            # is fitted with the C an in-memory fit takes without enough positives for CV (1.0)
            n_pos = y.sum(0)
            c = np.array([0.0 if k in (0, len(y)) else 1.0 if v is None else v for k, v in zip(n_pos, ctx.info["C_per_label"])])
            ctx.info["C_per_label"] = [float(v) if v > 0 else None for v in c]
            return scaler, *streamed.fit_logistic(feats, pool, y.astype(np.float64), scaler, c, coef, intercept, streamed.TOL,
                                                  multinomial=False)
        binary = coef.shape[0] == 1
        targets = (y == 1).astype(np.float64)[:, None] if binary else y
        return scaler, *streamed.fit_logistic(feats, pool, targets, scaler, np.array([ctx.info["C"]]), coef, intercept,
                                              streamed.TOL, multinomial=not binary)

    def _fit_classes(self, X: np.ndarray, y: np.ndarray, ctx: FitContext) -> tuple[np.ndarray, np.ndarray]:
        """Logistic regression, C by stratified CV on log-loss; (coef [K, D], intercept [K]) on standardised X."""
        from sklearn.linear_model import LogisticRegression

        folds = int(min(self.cfg.cv_folds, np.bincount(y).min()))
        with _quiet_fits():
            if folds >= 2:
                clf, scores = _cv_logistic(X, y, folds, self.cfg.seed)
                ctx.history.extend({"C": float(c), "cv_log_loss": float(-s)} for c, s in zip(clf.Cs_, scores))
                best_c = float(np.ravel(clf.C_)[0])
                ctx.info["cv_log_loss"] = round(float(-scores.max()), 4)  # the chosen C's, mean over folds
            else:  # a class with a single example: no CV possible, use the default strength
                best_c = 1.0
                clf = LogisticRegression(C=best_c, max_iter=3000).fit(X, y)
        ctx.info.update({"C": best_c, "cv_folds": folds})
        return clf.coef_, clf.intercept_

    def _fit_labels(self, X: np.ndarray, y: np.ndarray, ctx: FitContext) -> tuple[np.ndarray, np.ndarray]:
        """One-vs-rest: a logistic regression per label, each with its own C by CV. The per-label thresholds are
        chosen on out-of-fold probabilities of the same pool (the selection split is part of it)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        coef, intercept, oof, cs = np.zeros((y.shape[1], X.shape[1])), np.zeros(y.shape[1]), np.zeros(y.shape), []
        for j in _progress.track(range(y.shape[1]), y.shape[1], "one-vs-rest logistic regressions", min_total=8):
            t = y[:, j].astype(np.int64)
            n_pos = int(t.sum())
            if n_pos == 0 or n_pos == len(t):  # one value in the pool: a constant answer, no fit
                intercept[j], oof[:, j] = (-9.0, 0.0) if n_pos == 0 else (9.0, 1.0)
                cs.append(None)
                continue
            folds = int(min(self.cfg.cv_folds, n_pos, len(t) - n_pos))
            with _quiet_fits():
                if folds >= 2:
                    clf, _ = _cv_logistic(X, t, folds, self.cfg.seed)
                    c = float(np.ravel(clf.C_)[0])
                    cv = StratifiedKFold(folds, shuffle=True, random_state=self.cfg.seed)
                    oof[:, j] = cross_val_predict(LogisticRegression(C=c, max_iter=3000, tol=TOL), X, t, cv=cv,
                                                  method="predict_proba")[:, 1]
                else:
                    c = 1.0
                    clf = LogisticRegression(C=c, max_iter=3000).fit(X, t)
                    oof[:, j] = clf.predict_proba(X)[:, 1]
            coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
            cs.append(c)
        ctx.head.set_decisions(ctx.data.kind.decide(y, oof))
        ctx.info["decisions"] = "chosen on out-of-fold probabilities of train + selection"
        ctx.info["C_per_label"] = cs
        return coef, intercept

    def _fit_values(self, X: np.ndarray, y: np.ndarray, ctx: FitContext) -> tuple[np.ndarray, np.ndarray]:
        """Ridge regression on the head's standardised target, its strength by efficient leave-one-out CV."""
        from sklearn.linear_model import RidgeCV

        z = (y - ctx.head.target_mean.numpy()) / ctx.head.target_std.numpy()
        reg = RidgeCV(alphas=ALPHA_GRID).fit(X, z)
        ctx.info.update({"alpha": float(reg.alpha_), "cv_mse_standardised": round(float(-reg.best_score_), 4)})
        return np.atleast_2d(reg.coef_), np.atleast_1d(reg.intercept_)

    def finish(self, ctx: FitContext) -> Outcome:
        keys = ("C", "cv_log_loss", "alpha", "cv_mse_standardised", "head_sample", "features_cached")
        return Outcome(summary=[(k.replace("_", " "), str(ctx.info[k])) for k in keys if k in ctx.info])


def _cv_logistic(X: np.ndarray, y: np.ndarray, folds: int, seed: int) -> tuple[Any, np.ndarray]:
    """`LogisticRegressionCV` over `C_GRID` on log-loss: (the fitted model, mean CV score per C)."""
    from joblib import parallel_config
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    clf = LogisticRegressionCV(Cs=C_GRID, cv=cv, scoring="neg_log_loss", max_iter=3000, tol=TOL,
                               n_jobs=min(folds, os.cpu_count() or 1))
    # Folds in threads, BLAS single-threaded inside each: L-BFGS on a few thousand rows makes many
    # small matrix products, which multi-threaded BLAS slows down (measured 2x, docs/design-notes.md);
    # threads, not processes, because a process pool costs seconds to start.
    with threadpool_limits(1), parallel_config(backend="threading"):
        clf.fit(X, y)
    return clf, np.mean(next(iter(clf.scores_.values())), axis=0)  # [len(Cs)] mean over folds


def _floored(scale: np.ndarray) -> np.ndarray:
    """The features' spreads, floored at 1e-3 of the median one. A (nearly) constant feature would get a weight
    divided by its ~0 spread when the scaler is folded into the head (seen: 1e30 on MiniLM features of short
    texts), which breaks float32 and int8 inference; such a feature carries only noise."""
    return np.maximum(scale, 1e-3 * np.median(scale))


@contextlib.contextmanager
def _quiet_fits() -> Iterator[None]:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.8 attribute/l1_ratios transition notices
        yield
