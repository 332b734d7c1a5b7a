"""``timm:<name>``: any timm model, hub weights when reachable, or ``--weights FILE``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import HeadstartError, did_you_mean
from . import _hub
from ._base import load_into, load_state_dict_file
from ._registry import register_backbone, register_rebuild
from ._vision import ImageBackbone, data_config_of


def _timm_groups(net: nn.Module) -> list[nn.Module]:
    """Coarse groups from timm's own ``group_matcher`` (stem, stages/blocks), shallow -> deep."""
    from timm.models import group_modules

    try:
        matcher = net.group_matcher(coarse=True)
    except (AttributeError, NotImplementedError):
        return [m for m in net.children() if any(True for _ in m.parameters())]
    grouped = group_modules(net, matcher)
    modules = dict(net.named_modules())
    groups = []
    for gid in sorted(grouped):
        if gid == float("inf") or gid == 1e20:
            continue
        names = [n for n in grouped[gid] if n in modules]
        if names:
            groups.append(nn.ModuleList([modules[n] for n in names]))
    return groups


class TimmBackbone(ImageBackbone):
    def layer_groups(self) -> list[nn.Module]:
        return _timm_groups(self.net)


def _local_hub_weights(name: str) -> dict[str, str] | None:
    """The cached hub weights as a file to load (no network at all), None to download them, or an error at
    once when they are not cached and the hub cannot be reached."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None)
    if repo:
        found = _hub.cached_file(repo, _hub.WEIGHT_FILES)
        if found:
            return {"file": found}
    if not _hub.hub_reachable():
        raise _hub.unreachable(f"timm:{name}", repo or getattr(cfg, "url", None) or name, _hub.TIMM_FIX)
    return None


def _make(name: str, *, weights: str | None, pretrained: bool) -> TimmBackbone:
    import timm  # here, not at import: a py: or text model does not pay for it

    if not name:
        raise HeadstartError("option --model: give a timm model name, e.g. timm:resnet18 (see timm.list_models())")
    known = timm.list_models()
    if name not in known and name.split(".")[0] not in known:
        raise HeadstartError(f"option --model: timm has no model {name!r}; {did_you_mean(name, known, 'timm:{}')}"
                             f"search with timm.list_models('*{name[:6]}*')")
    use_hub = pretrained and weights is None
    overlay = _local_hub_weights(name) if use_hub else None
    try:
        net = timm.create_model(name, pretrained=use_hub, **({"pretrained_cfg_overlay": overlay} if overlay else {}))
    except Exception as e:  # hub unreachable, gated model, ...
        raise HeadstartError(
            f"timm:{name}: could not fetch pretrained weights ({e.__class__.__name__}); "
            "pass --weights FILE for a local checkpoint, or --no-pretrained for random init"
        ) from None
    if pretrained and weights is not None:
        load_into(net, load_state_dict_file(weights), str(weights))
    classifier = net.get_classifier()
    source_head = None
    if isinstance(classifier, nn.Linear) and pretrained:
        source_head = nn.Linear(classifier.in_features, classifier.out_features)
        source_head.load_state_dict(classifier.state_dict())
    net.reset_classifier(0)
    spec = {"kind": "timm", "name": name}
    return TimmBackbone(net, net.num_features, spec, data_config_of(net), source_head=source_head)


@register_backbone("timm")
def timm_backbone(name: str, *, weights: str | None = None, pretrained: bool = True) -> TimmBackbone:
    return _make(name, weights=weights, pretrained=pretrained)


@register_rebuild("timm")
def _rebuild(spec: dict[str, Any], assets: Path) -> TimmBackbone:
    return _make(spec["name"], weights=None, pretrained=False)

