"""Adaptation strategies, one per file, registered by name.

=============  ==================================================================
``linear``     frozen backbone, cached features, logistic regression head
``finetune``   backbone + head trained together (freezing, layer-wise LR decay)
``scratch``    the same network from random init (the baseline)
``lp-ft``      linear probe first, then fine-tuning from that head
``gradual``    one more layer group unfrozen every K epochs (ULMFiT)
``l2sp``       fine-tuning pulled towards the pretrained weights (L2-SP)
``lora``       low-rank adapters (peft) + head; the backbone stays frozen
``joint``      a labeled source dataset and the target trained at once, two heads
``distill``    a student trained on a teacher run's softened outputs + the labels
=============  ==================================================================
"""

from . import distill, finetune, gradual, joint, l2sp, linear, lora, lp_ft  # noqa: F401  (registration)
from ._base import FitContext, Strategy, get_strategy, list_strategies, option_fields, option_types, options_for, register_strategy

__all__ = ["FitContext", "Strategy", "get_strategy", "list_strategies", "option_fields", "option_types", "options_for", "register_strategy"]
