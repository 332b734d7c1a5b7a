"""Adaptation strategies, one per file, registered by name (``headstart strategies`` lists them).

Adding a method is one new file here plus its line below; nothing else in the
package changes: the pipeline calls the hooks of `Strategy`, the engine runs
the `Trainable` protocol, and the report and CLI show the method's `Outcome`.
"""

from . import adapt, distill, fewshot, finetune, gradual, joint, l2sp, linear, lora, lp_ft, multitask  # noqa: F401  (registration)
from ._base import (
    Outcome,
    Strategy,
    get_strategy,
    list_strategies,
    option_fields,
    option_types,
    options_for,
    register_strategy,
)
from ..protocol import FitContext

__all__ = ["FitContext", "Outcome", "Strategy", "get_strategy", "list_strategies", "option_fields", "option_types",
           "options_for", "register_strategy"]
