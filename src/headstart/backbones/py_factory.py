"""``py:<module>:<factory>``: a user's own ``nn.Module`` factory (+ ``--weights``).

This is how an in-house checkpoint is used: the factory builds the network
(the *full* classifier, as it was trained), ``--weights`` loads its state dict
safely (``module.`` prefixes handled), then headstart removes the source
classifier and keeps it as ``source_head``.

``<module>`` is an importable dotted module or a path to a ``.py`` file. This
is the one place where headstart runs user code: only name factories you trust.
The run records the factory's file and sha256; loading the run again imports
it only when trusted (`_code`, docs/security.md).

What the factory's network may declare (all optional):

* ``pretrained_cfg`` – timm-style data config (``input_size``, ``mean``, ``std``,
  ``crop_pct``); ImageNet 224 defaults otherwise;
* ``get_classifier()`` – the final linear layer; else the last ``nn.Linear``;
* ``forward_features(x)`` – pooled features [B, F]; else ``forward`` with the
  classifier replaced by identity;
* ``layer_groups()`` – modules shallow -> deep; else top-level stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import HeadstartError
from ._base import load_into, load_state_dict_file
from ._code import admit, import_admitted, import_named
from ._registry import register_backbone, register_rebuild
from ._vision import ImageBackbone, data_config_of


def _classifier_name(net: nn.Module) -> str | None:
    if hasattr(net, "get_classifier"):
        clf = net.get_classifier()
        for name, m in net.named_modules():
            if m is clf:
                return name
    last = None
    for name, m in net.named_modules():
        if isinstance(m, nn.Linear):
            last = name
    return last


def _set_module(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent = root
    *path, leaf = dotted.split(".")
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, leaf, new)


def _make(target: str, factory: Any, code: dict[str, Any], weights: str | None, pretrained: bool) -> ImageBackbone:
    net = factory()
    if not isinstance(net, nn.Module):
        raise HeadstartError(f"py:{target} returned {type(net).__name__}, not a torch.nn.Module")
    if weights is not None and pretrained:
        load_into(net, load_state_dict_file(weights), str(weights))
    name = _classifier_name(net)
    source_head = None
    if hasattr(net, "forward_features") and hasattr(net, "num_features"):
        num_features = int(net.num_features)
        if name is not None:
            source_head = net.get_submodule(name) if weights else None
    elif name is not None:
        clf = net.get_submodule(name)
        num_features = clf.in_features
        source_head = clf if weights else None
        _set_module(net, name, nn.Identity())
    else:
        raise HeadstartError(
            f"py:{target}: found no final nn.Linear classifier; define forward_features() and num_features on the network"
        )
    pooled = (lambda n, x: n.forward_features(x)) if hasattr(net, "forward_features") else None
    spec = {"kind": "py", "name": target, "code": code}
    return ImageBackbone(net, num_features, spec, data_config_of(net), source_head=source_head, pooled=pooled)


@register_backbone("py")
def py_backbone(target: str, *, weights: str | None = None, pretrained: bool = True) -> ImageBackbone:
    factory, code = import_named(target)  # named by the user on this command: it runs
    return _make(target, factory, code, weights, pretrained)


@register_rebuild("py")
def _rebuild(spec: dict[str, Any], assets: Path) -> ImageBackbone:
    """A run's network again: only what `admit` accepts at the trust level in force is imported."""
    path, data, code = admit(spec, assets.parent)
    return _make(str(spec.get("name", "")), import_admitted(path, data, code), code, None, False)
