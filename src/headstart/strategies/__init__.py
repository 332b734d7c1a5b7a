"""Adaptation strategies, one per file, registered by name.

=============  ==================================================================
``linear``     frozen backbone, cached features, logistic regression head
``finetune``   backbone + head trained together (freezing, layer-wise LR decay)
``scratch``    the same network from random init (the baseline)
=============  ==================================================================
"""

from . import finetune, linear  # noqa: F401  (registration)
from ._base import FitContext, Strategy, get_strategy, list_strategies, register_strategy

__all__ = ["FitContext", "Strategy", "get_strategy", "list_strategies", "register_strategy"]
