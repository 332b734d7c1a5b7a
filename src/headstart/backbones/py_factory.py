"""``py:<module>:<factory>``: a user's own ``nn.Module`` factory (+ ``--weights``).

This is how an in-house checkpoint is used: the factory builds the network
(the *full* classifier, as it was trained), ``--weights`` loads its state dict
safely (``module.`` prefixes handled), then headstart removes the source
classifier and keeps it as ``source_head``.

``<module>`` is an importable dotted module or a path to a ``.py`` file. This
is the one place where headstart runs user code: only name factories you trust.

What the factory's network may declare (all optional):

* ``pretrained_cfg`` – timm-style data config (``input_size``, ``mean``, ``std``,
  ``crop_pct``); ImageNet 224 defaults otherwise;
* ``get_classifier()`` – the final linear layer; else the last ``nn.Linear``;
* ``forward_features(x)`` – pooled features [B, F]; else ``forward`` with the
  classifier replaced by identity;
* ``layer_groups()`` – modules shallow -> deep; else top-level stages.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import HeadstartError
from ._base import load_into, load_state_dict_file
from ._registry import register_backbone, register_rebuild
from ._vision import ImageBackbone, data_config_of


def _import_factory(target: str):
    mod_name, sep, fn_name = target.rpartition(":")
    if not sep or not mod_name or not fn_name:
        raise HeadstartError(f"option --model: py:{target} must look like py:<module or file.py>:<factory function>")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name).expanduser().resolve()
            if not path.is_file():
                raise HeadstartError(f"option --model: factory file {path} does not exist")
            spec = importlib.util.spec_from_file_location(f"headstart_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[spec.name] = module  # type: ignore[union-attr]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(mod_name)
    except HeadstartError:
        raise
    except ImportError as e:
        raise HeadstartError(f"option --model: cannot import {mod_name!r} ({e}); run from its folder or install it") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise HeadstartError(f"option --model: {mod_name} has no callable {fn_name!r}")
    return fn


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


def _make(target: str, weights: str | None, pretrained: bool) -> ImageBackbone:
    factory = _import_factory(target)
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
    spec = {"kind": "py", "name": target}
    return ImageBackbone(net, num_features, spec, data_config_of(net), source_head=source_head, pooled=pooled)


@register_backbone("py")
def py_backbone(target: str, *, weights: str | None = None, pretrained: bool = True) -> ImageBackbone:
    return _make(target, weights, pretrained)


@register_rebuild("py")
def _rebuild(spec: dict[str, Any], assets: Path) -> ImageBackbone:
    return _make(spec["name"], None, False)
