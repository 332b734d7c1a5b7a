"""Choose a source model before fine-tuning: transferability scores and domain distances.

Pure functions on cached features (NumPy/SciPy/scikit-learn only); the
orchestration (extracting features for each candidate, tables, plots) lives in
``headstart._rank``.
"""

from ._distance import centroid_distance, linear_cka, median_bandwidth, mmd, proxy_a_distance
from ._scores import hscore, knn_accuracy, leep, linear_probe_accuracy, logme, nce

__all__ = [
    "centroid_distance",
    "hscore",
    "knn_accuracy",
    "leep",
    "linear_cka",
    "linear_probe_accuracy",
    "logme",
    "median_bandwidth",
    "mmd",
    "nce",
    "proxy_a_distance",
]
