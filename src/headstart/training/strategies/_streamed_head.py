"""``linear``'s head on a pool of features too large to hold in memory several times over.

scikit-learn fits the head on the whole pool in memory, as float64, standardised, and once more per CV fold in
threads: about six copies of the pool. Above `STREAM_VALUES` feature values in the pool (8M: 16,000 examples
of 512 features), `linear` streams instead, so that its peak memory stays that of a fixed-size sample
(docs/data.md, "Data larger than memory"):

1. the standardisation (mean and spread per feature) in one pass over the cached features, a chunk at a time;
2. the regularisation (C, or ridge's alpha) by the same cross-validation as on a small pool, on a stratified
   sample of `SAMPLE_VALUES` values of the pool (8,192 examples of 512 features);
3. the head at that strength on the whole pool: the same objective as scikit-learn's (C times the summed
   log-loss plus half the squared weights, intercept free), minimised by L-BFGS from the sample's solution, each
   evaluation streaming the pool; ridge regression exactly, from the normal equations accumulated a chunk at a time.

The strength is kept as the sample chose it, not rescaled with the pool's size: C weighs the data against a
fixed prior on the weights, and more data then means relatively less regularisation, as it should.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ... import _progress

STREAM_VALUES = 2**23
SAMPLE_VALUES = 2**22
CHUNK = 8192  # rows per read of the cache
# L-BFGS's gradient tolerance for the whole pool's fit (the largest gradient component of the objective divided
# by C n, as scikit-learn's tol). Tighter than the CV's (linear.TOL): the fit starts from
# the sample's solution, not from zero as scikit-learn does, so stopping early would stop somewhere else than
# scikit-learn does; near the optimum both agree. With weak regularisation (C = 32) on 40 texts, 1e-3 left
# probabilities 0.03 away from scikit-learn's on the same pool, 1e-5 within 0.001.
TOL = 1e-5


def streams(n_rows: int, width: int) -> bool:
    """Whether a pool of ``n_rows`` x ``width`` features is fitted streaming (this module) or in memory."""
    return n_rows * width > STREAM_VALUES


def sample(pool: np.ndarray, y: np.ndarray | None, size: int, seed: int, at_least: int = 10) -> np.ndarray:
    """Sorted positions of a sample of ``pool`` of about ``size``: per class (``y`` the pool's class ids) in
    proportion, every class keeping at least ``min(at_least, its count)`` examples so that the CV keeps its folds;
    uniform without ``y``."""
    rng = np.random.default_rng(seed)
    if y is None:
        return np.sort(rng.choice(pool, size=min(size, len(pool)), replace=False))
    picked = []
    for c in np.unique(y):
        members = pool[y == c]
        k = min(len(members), max(at_least, round(size * len(members) / len(pool))))
        picked.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(picked))


class Standardiser:
    """Mean and spread per feature of rows ``pool`` of ``features``, in one streamed pass (float64 sums); the
    spread floored as in-memory fits floor it (`floor`)."""

    def __init__(self, features: np.ndarray, pool: np.ndarray, floor: Callable[[np.ndarray], np.ndarray]):
        from ...features import chunks

        total, squares = np.zeros(features.shape[1]), np.zeros(features.shape[1])
        for _, x in _progress.track(chunks(features, pool, CHUNK), -(-len(pool) // CHUNK), "standardising features",
                                    min_total=4):
            x = x.astype(np.float64)
            total += x.sum(0)
            squares += np.square(x).sum(0)
        self.mean_ = total / len(pool)
        self.scale_ = floor(np.sqrt(np.maximum(squares / len(pool) - np.square(self.mean_), 0.0)))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_


def _standardised(features: np.ndarray, pool: np.ndarray, scaler: Standardiser) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from ...features import chunks

    for at, x in chunks(features, pool, CHUNK):
        yield at, scaler.transform(x)


def fit_logistic(features: np.ndarray, pool: np.ndarray, targets: np.ndarray, scaler: Standardiser, c: np.ndarray,
                 coef: np.ndarray, intercept: np.ndarray, tol: float, multinomial: bool) -> tuple[np.ndarray, np.ndarray]:
    """L2-regularised logistic regression on the standardised rows ``pool`` of ``features``, streamed.

    ``targets``: class ids [len(pool)] with ``multinomial`` (softmax over coef's rows), else 0/1 [len(pool), K]
    with a sigmoid per row of coef (binary: K = 1; one-vs-rest labels: one column each). ``c`` [K] (or a
    single C) weighs each output's summed loss against half its squared weights, as scikit-learn's C does;
    a zero C fits nothing for that output (it keeps its start). ``coef`` [K, D] and ``intercept`` [K] are the
    start (the sample's solution). Returns the minimiser (coef, intercept), found by scipy's L-BFGS-B, as
    scikit-learn's is (not torch's: its first optimizer imports ~180 MB of modules that `linear` has no other
    use for)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_softmax

    k, d = coef.shape
    c = np.broadcast_to(np.asarray(c, dtype=np.float64), (k,))
    if not (c > 0).any():  # every output constant: nothing to fit (and no objective to scale)
        return coef, intercept
    scale = float(c.max()) * len(pool)  # divided by C n: scikit-learn's objective as its L-BFGS sees it
    eye = np.eye(k)
    max_eval = 250
    evaluations = _progress.track(range(max_eval), max_eval, "fitting the head on every example (L-BFGS steps, at most)")

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        next(evaluations, None)
        w, b = theta[: k * d].reshape(k, d), theta[k * d :]
        loss, gw, gb = 0.0, np.zeros((k, d)), np.zeros(k)
        for at, x in _standardised(features, pool, scaler):
            z = x @ w.T + b
            if multinomial:
                logp = log_softmax(z, axis=1)
                loss += c[0] * -np.take_along_axis(logp, targets[at][:, None], 1).sum()
                err = c[0] * (np.exp(logp) - eye[targets[at]])  # one-hot a chunk at a time
            else:
                t = targets[at]
                loss += float((c * (np.logaddexp(0, z) - t * z)).sum())
                err = c * (expit(z) - t)
            gw += err.T @ x
            gb += err.sum(0)
        loss += 0.5 * float((np.square(w).sum(1) * (c > 0)).sum())
        gw += w * (c > 0)[:, None]
        return loss / scale, np.concatenate([gw.ravel(), gb]) / scale

    try:
        got = minimize(objective, np.concatenate([coef.ravel(), intercept]).astype(np.float64), jac=True,
                       method="L-BFGS-B", options={"maxiter": max_eval, "maxfun": max_eval, "gtol": tol,
                                "ftol": 64 * np.finfo(float).eps, "maxls": 50})  # scikit-learn's stopping rules
    finally:
        evaluations.close()
    return got.x[: k * d].reshape(k, d), got.x[k * d :]  # an output with C = 0 has no gradient: it keeps its start


def fit_ridge(features: np.ndarray, pool: np.ndarray, z: np.ndarray, scaler: Standardiser,
              alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression of ``z`` [len(pool)] (or [len(pool), K]) on the standardised rows ``pool``, exact: the
    normal equations accumulated a chunk at a time. The rows are centred already (standardised by the pool's own
    mean), so the intercept is the mean of ``z``. Returns (coef [K, D], intercept [K])."""
    z = z.reshape(len(pool), -1).astype(np.float64)
    mean_z = z.mean(0)
    d = features.shape[1]
    gram, cross = np.zeros((d, d)), np.zeros((d, z.shape[1]))
    for at, x in _standardised(features, pool, scaler):
        gram += x.T @ x
        cross += x.T @ (z[at] - mean_z)
    return np.linalg.solve(gram + alpha * np.eye(d), cross).T, mean_z


__all__ = ["CHUNK", "SAMPLE_VALUES", "STREAM_VALUES", "TOL", "Standardiser", "fit_logistic", "fit_ridge", "sample", "streams"]

