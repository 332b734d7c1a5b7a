"""The registry of source families, torch-free: ``headstart --help`` and ``import headstart`` read it without
loading any model code.

A family is declared by prefix and module (`declare_family`); its module is imported the first time a model
string names it, and registers its builder there with `register_backbone`. A text fit therefore never imports
the image families (nor torchvision through them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from ._base import Backbone

_FAMILIES: dict[str, str] = {}  # prefix -> module that registers it when imported
_PREFLIGHT: dict[str, Callable[[str, str | None, bool], None]] = {}  # prefix -> torch-free check before building
_REGISTRY: dict[str, Callable[..., Backbone]] = {}
_REBUILD: dict[str, Callable[..., Backbone]] = {}
_ADAPTERS: dict[str, Callable[[Backbone, dict[str, Any]], None]] = {}
_RUNS_CODE: set[str] = set()  # kinds whose rebuild imports a user's code (`py`): a run of one needs trust


def _registrar(table: dict[str, Callable[..., Any]], key: str, what: str):
    """A decorator that files its function under ``key``; a second one for the same key is an error."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if key in table:
            raise ValueError(f"{what} {key!r} is already registered")
        table[key] = fn
        return fn

    return deco


def register_backbone(prefix: str):
    """Register a builder for ``<prefix>:<name>`` model strings; duplicate prefixes are an error."""
    return _registrar(_REGISTRY, prefix, "backbone prefix")


def register_rebuild(kind: str):
    """Register how a saved backbone of ``spec["kind"] == kind`` is rebuilt without source weights."""
    return _registrar(_REBUILD, kind, "rebuild for")


def register_adapter(key: str):
    """Register how adapters recorded in ``spec[key]`` are put back into a rebuilt backbone (a strategy that
    wraps the network, e.g. LoRA, registers it in its own file)."""
    return _registrar(_ADAPTERS, key, "adapter")


def declare_family(prefix: str, module: str, preflight: Callable[[str, str | None, bool], None] | None = None,
                   runs_code: bool = False) -> None:
    """Name the module that registers ``prefix`` (imported on first use). ``preflight(name, weights, pretrained)``
    runs before that import and before the build: a cheap check that can refuse at once (e.g. hub weights that
    are neither cached nor reachable). ``runs_code``: rebuilding a saved backbone of this kind imports a user's
    code, which a run may do only when trusted (docs/security.md)."""
    _FAMILIES[prefix] = module
    if preflight is not None:
        _PREFLIGHT[prefix] = preflight
    if runs_code:
        _RUNS_CODE.add(prefix)


def runs_user_code(spec: dict[str, Any]) -> bool:
    """Whether rebuilding the saved backbone ``spec`` would import a user's code (no import needed to tell)."""
    return spec.get("kind") in _RUNS_CODE


def _builder(table: dict[str, Callable[..., Backbone]], key: str) -> Callable[..., Backbone] | None:
    if key not in table and key in _FAMILIES:
        importlib.import_module(_FAMILIES[key])
    return table.get(key)


def list_backbones() -> list[str]:
    """The known model-string prefixes, imported or not.

    Returns:
        The prefixes, sorted: what comes before the colon of ``--model`` (``timm:resnet18``, ``run:DIR``).

    Examples:
        >>> import headstart
        >>> headstart.list_backbones()
        ['hf', 'minilm', 'py', 'run', 'scratch', 'timm']
    """
    return sorted(set(_REGISTRY) | set(_FAMILIES))


def parse_model(model: str) -> tuple[str, str]:
    prefix, _, rest = model.partition(":")
    if prefix not in _REGISTRY and prefix not in _FAMILIES:
        raise ConfigError(
            f"option --model: {model!r} has no known prefix; {did_you_mean(prefix, list_backbones())}use one of "
            + ", ".join(f"{p}:" if p not in ("minilm",) else p for p in list_backbones())
        )
    return prefix, rest


def build_backbone(model: str, *, weights: str | None = None, pretrained: bool = True) -> Backbone:
    """Create the backbone named by a model string, with its source weights."""
    prefix, rest = preflight(model, weights=weights, pretrained=pretrained)
    return _builder(_REGISTRY, prefix)(rest, weights=weights, pretrained=pretrained)


def preflight(model: str, *, weights: str | None = None, pretrained: bool = True) -> tuple[str, str]:
    """The model string's family check that needs no model code (see `declare_family`); returns (prefix, rest).
    The fit pipeline runs it before importing torch, so that a model that cannot be had is refused at once."""
    prefix, rest = parse_model(model)
    if prefix in _PREFLIGHT:
        _PREFLIGHT[prefix](rest, weights, pretrained)
    return prefix, rest


def rebuild_backbone(spec: dict[str, Any], assets: Path) -> Backbone:
    """The architecture of a saved backbone, without source weights (a run loads its own)."""
    kind = spec["kind"]
    if kind == "run":  # a run saves the backbone it adapted, never a pointer to another run folder
        raise ConfigError("a saved backbone of kind 'run' names another run folder, which headstart never follows; "
                          "the run was altered, fit it again")
    build = _builder(_REGISTRY, kind)  # imports the family, which registers its rebuild too
    if kind in _REBUILD:
        backbone = _REBUILD[kind](spec, assets)
    elif build is not None:
        backbone = build(spec.get("name", ""), weights=None, pretrained=False)
    else:
        raise ConfigError(f"a saved backbone of kind {kind!r} needs a family this installation does not have; "
                          f"known: {', '.join(list_backbones())}")
    if spec.get("pool", "avg") != "avg":
        backbone.set_pool(spec["pool"])
    for key, rebuild in _ADAPTERS.items():  # adapters saved unmerged: the same modules get them again
        if spec.get(key):
            rebuild(backbone, spec[key])
    return backbone
