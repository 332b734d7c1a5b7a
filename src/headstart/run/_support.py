"""A few-shot model meeting a support set: prototypes, or MAML's inner loop.

One code path for the episodes of training, the episodes that are scored and
`Run.predict(support=...)`, so a run predicts the way it was measured. A few-shot
run records its rule in ``model.json["support"]``:

``{"rule": "prototypes", "metric": "euclidean" | "cosine", "scale": s}``
    ProtoNet (Snell et al., NeurIPS 2017, https://arxiv.org/abs/1703.05175): a
    class is the mean feature of its support examples; a query's logits are minus
    its squared Euclidean distance to each, or ``s`` times its cosine similarity.
``{"rule": "inner-loop", "adapt": "all" | "head", "steps": n, "lr": a, "body_lr": b, "frozen_groups": k, "scale": s}``
    MAML (Finn et al., ICML 2017, https://arxiv.org/abs/1703.03400): ``n`` SGD
    steps on the support set's cross-entropy, from the meta-learned start, of
    the head (at ``a``) and every parameter above the ``k`` frozen layer groups
    (at ``b``) (``all``), or of the head alone (``head``: ANIL, Raghu et al., ICLR 2020).
    The head starts as one meta-learned row copied for every class, so any number
    of classes works and all start equal (the single-vector head of Ye & Chao,
    ICLR 2022); it is stored as ``support.weight``/``support.bias``. The head sees
    unit-length features times ``s`` (`head_logits`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from ..heads import Head

METRICS = ("euclidean", "cosine")


def prototypes(features: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """Mean feature per class: [S, F], labels [S] in 0..n-1 -> [n, F] (a class without example stays 0)."""
    sums = torch.zeros(n, features.shape[1], dtype=features.dtype, device=features.device).index_add(0, y, features)
    counts = torch.bincount(y, minlength=n).clamp(min=1).to(features.dtype)
    return sums / counts[:, None]


def prototype_logits(features: torch.Tensor, protos: torch.Tensor, metric: str, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """[Q, F] x [n, F] -> [Q, n]: minus the squared Euclidean distance, or ``scale`` x cosine similarity."""
    if metric == "cosine":
        return scale * F.normalize(features, dim=-1) @ F.normalize(protos, dim=-1).T
    return -torch.cdist(features, protos).pow(2)


def prototype_head(protos: torch.Tensor, metric: str, scale: float = 1.0) -> Head:
    """The prototypes as an ordinary multiclass `Head` (exports and serves like any run).

    Euclidean: ``-|f - c|^2 = 2 c.f - |c|^2 - |f|^2``, and the last term is the same for every class, so the
    softmax is that of a linear layer with weights ``2c`` and biases ``-|c|^2``. Cosine: unit features times
    ``scale`` into a layer whose rows are the unit prototypes.
    """
    n, width = protos.shape
    head = Head("multiclass", width, n, normalize=float(scale) if metric == "cosine" else None)
    with torch.no_grad():
        if metric == "cosine":
            head.fc.weight.copy_(F.normalize(protos, dim=-1))
            head.fc.bias.zero_()
        else:
            head.fc.weight.copy_(2 * protos)
            head.fc.bias.copy_(-protos.pow(2).sum(1))
    return head.eval()


def inner_loop(loss: Callable[[dict[str, torch.Tensor]], torch.Tensor], params: dict[str, torch.Tensor], steps: int,
               lr: float, first_order: bool, body_lr: float | None = None) -> dict[str, torch.Tensor]:
    """``steps`` SGD steps on ``loss(params)``, written with `torch.func.grad`: the head's entries (``head.*``)
    at ``lr``, the backbone's at ``body_lr`` (default ``lr``).

    Second order (``first_order=False``): the adapted parameters stay functions of the start, so the
    outer loss's gradient flows back through every inner step (Hessian-vector products included).
    First order (FOMAML): each step's gradient is a constant, and the outer gradient is the query
    loss's gradient at the adapted point.
    """
    step = grad(loss)
    rate = {k: lr if k.startswith("head.") or body_lr is None else body_lr for k in params}
    for _ in range(steps):
        g = step(params)
        params = {k: p - rate[k] * (g[k].detach() if first_order else g[k]) for k, p in params.items()}
    return params


def expand_head(weight: torch.Tensor, bias: torch.Tensor, ways: int) -> dict[str, torch.Tensor]:
    """The meta-learned single row ([1, F], [1]) as an n-way head's starting weights ([n, F], [n])."""
    return {"head.weight": weight.expand(ways, -1), "head.bias": bias.expand(ways)}


class Adaptable(nn.Module):
    """Backbone + linear head as one module, for `torch.func.functional_call` with adapted parameters.

    The head's weights are always given in the call (they depend on the episode's number of classes).
    """

    def __init__(self, backbone: nn.Module, scale: float = 10.0):
        super().__init__()
        self.backbone, self.scale = backbone, scale

    def forward(self, batch: Any, head: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        feats = self.backbone.forward_features(batch)
        return feats if head is None else head_logits(feats, head["weight"], head["bias"], self.scale)


def head_logits(feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """MAML's head: a linear layer on unit-length features times ``scale`` (`Head` with ``normalize=scale``).

    Fixing the features' length makes an inner step move the logits by about ``lr * scale**2`` whatever the
    backbone's own feature norm (0.1 for a small CNN, 10 for another), so one inner rate suits every backbone.
    """
    return F.linear(F.normalize(feats, dim=-1) * scale, weight, bias)


def adapted_params(net: Adaptable, frozen: list[nn.Module], adapt: str) -> dict[str, torch.Tensor]:
    """The backbone parameters the inner loop changes (``adapt="all"``: every trainable one outside the frozen
    groups; ``"head"``: none)."""
    if adapt == "head":
        return {}
    fixed = {id(p) for g in frozen for p in g.parameters()}
    return {k: p for k, p in net.named_parameters() if p.requires_grad and id(p) not in fixed}


def functional_logits(net: Adaptable, params: dict[str, torch.Tensor], batch: Any) -> torch.Tensor:
    """Logits of ``batch`` with ``params`` (backbone entries as named in ``net``, plus ``head.weight``/``head.bias``)."""
    head = {"weight": params["head.weight"], "bias": params["head.bias"]}
    body = {k: v for k, v in params.items() if not k.startswith("head.")}
    return functional_call(net, body, (batch,), {"head": head}, strict=False)


def adapt_inner(net: Adaptable, start: dict[str, torch.Tensor], batch: Any, y: torch.Tensor, steps: int, lr: float,
                first_order: bool, body_lr: float | None = None) -> dict[str, torch.Tensor]:
    """MAML's inner loop on one support batch, from ``start`` (backbone entries + head rows)."""
    return inner_loop(lambda p: F.cross_entropy(functional_logits(net, p, batch), y), start, steps, lr, first_order,
                      body_lr)


def head_inner(feats: torch.Tensor, y: torch.Tensor, start: dict[str, torch.Tensor], steps: int, lr: float,
               first_order: bool, scale: float) -> dict[str, torch.Tensor]:
    """ANIL's inner loop: the head rows alone, on fixed features [S, F]."""
    loss = lambda p: F.cross_entropy(head_logits(feats, p["head.weight"], p["head.bias"], scale), y)  # noqa: E731
    return inner_loop(loss, start, steps, lr, first_order)


def support_params(net: Adaptable, rule: dict[str, Any], weights: dict[str, torch.Tensor], batch: Any, y: torch.Tensor,
                   n: int) -> dict[str, torch.Tensor]:
    """The parameters MAML's inner loop reaches on one support set (first order: nothing is differentiated
    through it afterwards), from the run's meta-learned start; for `functional_logits`."""
    frozen = net.backbone.layer_groups()[: int(rule.get("frozen_groups", 0))]
    start = {k: v.detach() for k, v in adapted_params(net, frozen, rule.get("adapt", "all")).items()}
    start |= expand_head(weights["support.weight"], weights["support.bias"], n)
    steps, lr = int(rule["steps"]), float(rule["lr"])
    with torch.enable_grad():
        if rule.get("adapt") == "head":  # ANIL: the features do not change, compute them once
            with torch.no_grad():
                feats = net.backbone.forward_features(batch)
            return head_inner(feats, y, start, steps, lr, True, net.scale)
        return adapt_inner(net, start, batch, y, steps, lr, True, rule.get("body_lr"))


def adapt_to_support(backbone: nn.Module, weights: dict[str, torch.Tensor], rule: dict[str, Any], batch: Any,
                     y: torch.Tensor, n: int) -> tuple[nn.Module, Head]:
    """A run's backbone and a new n-class head fitted to one support set by the run's recorded ``rule``
    (`Run.predict` with ``support=``). The backbone is a copy when the inner loop changes it."""
    if rule["rule"] == "prototypes":
        with torch.no_grad():
            protos = prototypes(backbone.forward_features(batch), y, n)
        return backbone, prototype_head(protos, rule.get("metric", "euclidean"), rule.get("scale", 1.0))
    net = Adaptable(copy.deepcopy(backbone) if rule.get("adapt") == "all" else backbone, float(rule["scale"])).eval()
    done = support_params(net, rule, weights, batch, y, n)
    with torch.no_grad():
        for k, v in done.items():
            if not k.startswith("head."):
                net.get_parameter(k).copy_(v)
    head = Head("multiclass", done["head.weight"].shape[1], n, normalize=net.scale)
    with torch.no_grad():
        head.fc.weight.copy_(done["head.weight"])
        head.fc.bias.copy_(done["head.bias"])
    return net.backbone, head.eval()


__all__ = ["METRICS", "Adaptable", "adapt_inner", "adapt_to_support", "adapted_params", "expand_head",
           "functional_logits", "head_inner", "head_logits", "inner_loop", "prototype_head", "prototype_logits", "prototypes",
           "support_params"]
