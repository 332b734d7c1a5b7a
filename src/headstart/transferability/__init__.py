"""Choose a source model before fine-tuning: transferability scores and domain distances.

Pure functions on cached features (NumPy/SciPy/scikit-learn only; `multi_kernel_mmd2` also takes torch
tensors, for the ``mmd`` strategy's loss); the
orchestration (extracting features for each candidate, tables, plots) lives in
``headstart._rank``.
"""

from ._distance import (
    centroid_distance,
    dev_risk,
    importance_weights,
    linear_cka,
    median_bandwidth,
    mmd,
    multi_kernel_mmd2,
    proxy_a_distance,
)
from ._scores import hscore, knn_accuracy, leep, linear_probe_accuracy, logme, nce

__all__ = [
    "centroid_distance",
    "dev_risk",
    "hscore",
    "importance_weights",
    "knn_accuracy",
    "leep",
    "linear_cka",
    "linear_probe_accuracy",
    "logme",
    "median_bandwidth",
    "mmd",
    "multi_kernel_mmd2",
    "nce",
    "proxy_a_distance",
]
