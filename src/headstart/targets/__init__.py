"""Task types: what a label is, and everything that follows from it (see `_base` for the table).

``binary`` and ``multiclass`` (``classes.py``), ``multilabel``, ``regression``: one file each, registered
by name. Readers, heads, metrics, the report and `predict` ask `get_task_type(name)`.
"""

from __future__ import annotations

from . import classes, multilabel, regression  # noqa: F401  (registration)
from ._base import (
    TaskType,
    get_task_type,
    has_label,
    register_task_type,
    split_columns,
    task_type_names,
    truthy,
    with_score,
)

__all__ = ["TaskType", "get_task_type", "has_label", "register_task_type", "split_columns", "task_type_names", "truthy",
           "with_score"]
