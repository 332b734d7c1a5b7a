"""``run:<dir>``: an earlier run's adapted backbone as the source model.

The two-step workflow: fit a source model on a large related dataset, then
``headstart fit TARGET --model run:<that run>`` transfers it. The earlier
run's head becomes the backbone's ``source_head`` (its class probabilities are
what LEEP/NCE need).
"""

from __future__ import annotations

from ..errors import HeadstartError
from ._base import Backbone, register_backbone


@register_backbone("run")
def run_backbone(path: str, *, weights: str | None = None, pretrained: bool = True) -> Backbone:
    from ..run import load_run

    if weights is not None:
        raise HeadstartError("option --weights: a run: model already has its weights; drop --weights")
    run = load_run(path)
    backbone = run.backbone
    if pretrained:
        backbone.source_head = run.head
    else:
        backbone.reinit()
    return backbone
