"""LoRA adapters inside any backbone, through peft.

`add_lora` injects low-rank adapters (Hu et al., 2021, https://arxiv.org/abs/2106.09685)
into the backbone's network with peft's ``LoraModel`` and freezes everything
else. The settings are recorded in ``backbone.spec["lora"]``, so a saved run is
rebuilt with the same adapters before its weights are loaded (`rebuild_backbone`).

Target modules, when not given, follow the architecture (first family present):

==================  =========================================================
BERT-like encoders  query, key, value, attention.output.dense
LLaMA/Mistral-like  q_proj, k_proj, v_proj, o_proj
DistilBERT          q_lin, k_lin, v_lin, out_lin
timm ViT            attn.qkv, attn.proj
other networks      1x1 convolutions (groups=1) and linear layers; if none,
                    every convolution with groups=1
==================  =========================================================
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError

FAMILIES: list[list[str]] = [
    ["query", "key", "value", "attention.output.dense"],
    ["q_proj", "k_proj", "v_proj", "o_proj"],
    ["q_lin", "k_lin", "v_lin", "out_lin"],
    ["attn.qkv", "attn.proj"],
]


def lora_root(backbone: nn.Module) -> nn.Module:
    """The network inside a backbone wrapper (``model`` for text, ``net`` for images)."""
    for attr in ("model", "net"):
        inner = getattr(backbone, attr, None)
        if isinstance(inner, nn.Module):
            return inner
    return backbone


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def default_targets(root: nn.Module) -> list[str]:
    """Full names of the modules to adapt (see the module docstring)."""
    named = [(n, m) for n, m in root.named_modules() if n]
    for family in FAMILIES:
        hits = [n for n, m in named if isinstance(m, (nn.Linear, nn.Conv1d)) and any(_matches(n, t) for t in family)]
        if hits:
            return hits
    found = [n for n, m in named
             if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1)]
    return found or [n for n, m in named if isinstance(m, nn.Conv2d) and m.groups == 1]


def resolve_targets(root: nn.Module, targets: list[str] | None) -> list[str]:
    """Full module names for user-given name suffixes (or the defaults); an unmatched suffix is an error."""
    if not targets:
        found = default_targets(root)
        if not found:
            raise ConfigError("strategy lora: this network has no linear or 1x1 convolution layer to adapt; give --lora-targets")
        return found
    names = [n for n, _ in root.named_modules() if n]
    out: list[str] = []
    for t in targets:
        hit = [n for n in names if _matches(n, t)]
        if not hit:
            layers = [n for n, m in root.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))][:6]
            raise ConfigError(f"option --lora-targets: no module named {t!r}; layers LoRA can adapt here are e.g. "
                              f"{', '.join(layers)}")
        out.extend(h for h in hit if h not in out)
    return out


def add_lora(backbone: Any, r: int, alpha: float, dropout: float, targets: list[str] | None) -> Any:
    """Inject LoRA into ``backbone`` (in place); returns peft's tuner (for ``merge_and_unload``)."""
    from peft import LoraConfig, LoraModel

    root = lora_root(backbone)
    names = resolve_targets(root, targets)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none")
    tuner = LoraModel(root, config, "default")  # freezes every non-adapter parameter of root
    for n, p in backbone.named_parameters():
        p.requires_grad_("lora_" in n)
    backbone.spec = {**backbone.spec, "lora": {"r": r, "alpha": alpha, "dropout": dropout, "targets": names}}
    return tuner


def merge_lora(backbone: Any, tuner: Any) -> None:
    """Fold the adapters into the base weights: a plain network again, no LoRA at inference."""
    tuner.merge_and_unload()
    root = lora_root(backbone)
    root.__dict__.pop("peft_config", None)
    spec = dict(backbone.spec)
    spec.pop("lora", None)
    backbone.spec = spec


def adapter_parameters(backbone: nn.Module) -> int:
    return sum(p.numel() for n, p in backbone.named_parameters() if "lora_" in n)
