"""Choose a source model before fine-tuning: transferability scores and domain distances.

Pure functions on cached features (NumPy/SciPy/scikit-learn only; `multi_kernel_mmd2` also takes torch
tensors, for the ``mmd`` strategy's loss); the
orchestration (extracting features for each candidate, tables, plots) lives in
``headstart.tasks.rank``.
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
from ._finetune import (ETRAN, NCTI, bootstrap_interval, bootstrap_values, combine_parts, etran_parts, gbc, ncti_parts, pactran,
                       percentile_interval, sfda, transrate)
from ._scores import hscore, knn_accuracy, leep, linear_probe_accuracy, logme, nce

__all__ = [
    "bootstrap_interval",
    "bootstrap_values",
    "centroid_distance",
    "combine_parts",
    "dev_risk",
    "ETRAN",
    "etran_parts",
    "gbc",
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
    "NCTI",
    "ncti_parts",
    "pactran",
    "percentile_interval",
    "proxy_a_distance",
    "sfda",
    "transrate",
]
