"""``linear``: feature extraction. Frozen backbone, cached features, a linear head.

The head is an L2-regularised logistic regression fitted with L-BFGS on
standardised features (scikit-learn). Its strength C is chosen by stratified
cross-validation (log-loss) on the training + selection data only, never on
the reported split. The fitted scaler is folded into the head's weights, so
the saved model is an ordinary backbone + ``nn.Linear`` and predicts without
scikit-learn.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from ..protocol import FitContext
from ._base import Outcome, Strategy, register_strategy

C_GRID = np.logspace(-4, 2, 13)
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
        from joblib import parallel_config
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        from ...features import extract

        if ctx.data.task not in ("binary", "multiclass"):
            raise NotImplementedError(f"linear strategy: task {ctx.data.task} is not supported yet")
        feats, info = extract(ctx.backbone, ctx.data.items, ctx.data.fingerprint(), ctx.cache_dir, batch_size=max(64, self.cfg.batch_size),
                              source=self.cfg.data)
        ctx.features = feats
        ctx.info["features_cached"] = info["cached"]
        ctx.info["feature_seconds"] = round(info["seconds"], 3)
        pool = np.concatenate([ctx.data.train_idx, ctx.data.val_idx]) if self.fits_selection_split else ctx.data.train_idx
        X = np.asarray(feats[pool], dtype=np.float64)
        y = ctx.data.y[pool]
        t0 = time.perf_counter()
        scaler = StandardScaler().fit(X)
        # A (nearly) constant feature would get a weight divided by its ~0 spread when the scaler is folded
        # into the head below (seen: 1e30 on MiniLM features of short texts), which breaks float32 and int8
        # inference. Floor the spread at 1e-3 of the median feature's: such a feature carries only noise.
        scaler.scale_ = np.maximum(scaler.scale_, 1e-3 * np.median(scaler.scale_))
        Xs = scaler.transform(X)
        folds = int(min(self.cfg.cv_folds, np.bincount(y).min()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.8 attribute/l1_ratios transition notices
            if folds >= 2:
                cv = StratifiedKFold(folds, shuffle=True, random_state=self.cfg.seed)
                clf = LogisticRegressionCV(Cs=C_GRID, cv=cv, scoring="neg_log_loss", max_iter=3000, tol=TOL,
                                           n_jobs=min(folds, os.cpu_count() or 1))
                # Folds in threads, BLAS single-threaded inside each: L-BFGS on a few thousand rows makes many
                # small matrix products, which multi-threaded BLAS slows down (measured 2x, docs/design-notes.md);
                # threads, not processes, because a process pool costs seconds to start.
                with threadpool_limits(1), parallel_config(backend="threading"):
                    clf.fit(Xs, y)
                scores = np.mean(next(iter(clf.scores_.values())), axis=0)  # [len(Cs)] mean over folds
                ctx.history.extend({"C": float(c), "cv_log_loss": float(-s)} for c, s in zip(clf.Cs_, scores))
                best_c = float(np.ravel(clf.C_)[0])
                ctx.info["cv_log_loss"] = round(float(-scores.max()), 4)  # the chosen C's, mean over folds
            else:  # a class with a single example: no CV possible, use the default strength
                best_c = 1.0
                clf = LogisticRegression(C=best_c, max_iter=3000).fit(Xs, y)
        ctx.info.update({"C": best_c, "cv_folds": folds, "head_fit_seconds": round(time.perf_counter() - t0, 3)})
        # Fold the standardisation into the linear layer: w' = w / sigma, b' = b - w' . mu
        w = clf.coef_ / scaler.scale_[None, :]
        b = clf.intercept_ - w @ scaler.mean_
        with torch.no_grad():
            ctx.head.fc.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            ctx.head.fc.bias.copy_(torch.as_tensor(b, dtype=torch.float32))

    def finish(self, ctx: FitContext) -> Outcome:
        rows = [(k.replace("_", " "), str(ctx.info[k])) for k in ("C", "cv_log_loss", "features_cached") if k in ctx.info]
        return Outcome(summary=rows)
