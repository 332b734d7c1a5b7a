"""``lora``: low-rank adapters (peft) in a frozen backbone, plus a new head.

Hu et al., 2021 (https://arxiv.org/abs/2106.09685): each adapted weight W is
used as W + (alpha / r) * B A with A [r, in] and B [out, r] trained, W frozen;
B starts at zero, so training starts from the pretrained function. Target
modules are chosen per architecture (`backbones._adapters`), ``--lora-targets``
overrides them.

What the run directory holds (the head is saved *with* the adapter, unlike plain peft):

* ``model.safetensors`` the whole model, adapters unmerged, and the settings in
  ``model.json`` so `load` re-creates them; with ``--merge`` the adapters are
  folded into the base weights instead and the run is an ordinary network
  (no LoRA cost at inference);
* ``adapter/`` the adapter alone in peft's format (``adapter_config.json``,
  ``adapter_model.safetensors``) with the head (``head.safetensors``) and the
  classes (``labels.json``): megabytes, to combine with the same base model.

The adapters learn at ``--lora-lr``, the head at ``--lr x --head-lr-mult``. Default
``--lora-lr``: 5x ``--lr`` for text (transformer LoRA is run at ~5e-4 where full
fine-tuning uses 1e-5..1e-4, Hu et al. Table 9), 1x for images: adapted
convolutions feed BatchNorm layers whose statistics stay frozen, and larger steps
blow the activations up (measured on sign-language digits, MobileNetV1, 20
labels per class: lora-lr 1e-2 stays at chance, 2e-3 reaches 0.75).
Frozen BatchNorm stays in eval mode unless ``--train-bn``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._io import atomic_write_text
from ...backbones import register_adapter
from ...config import _opt
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import Outcome, Strategy, register_strategy, with_weight_decay

if TYPE_CHECKING:  # torch is imported where used: `headstart --help` and the registry do not load it
    from torch import nn


@dataclass
class LoraOptions:
    lora_r: int = _opt(8, "lora: rank of the adapters.")
    lora_alpha: float = _opt(16.0, "lora: scaling; the update is (alpha / r) * B A.")
    lora_dropout: float = _opt(0.05, "lora: dropout on the adapters' input.")
    lora_targets: str | None = _opt(None, "lora: comma-separated module names (or name endings) to adapt (default: per architecture).")
    lora_lr: float | None = _opt(None, "lora: learning rate of the adapters (default: 5x --lr for text, --lr for images).")
    merge: bool = _opt(False, "lora: fold the adapters into the base weights in the saved model (plain network at inference).")

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise ConfigError(f"option --lora-r: {self.lora_r} must be at least 1")
        if not self.lora_alpha > 0:
            raise ConfigError(f"option --lora-alpha: {self.lora_alpha} must be positive")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"option --lora-dropout: {self.lora_dropout} must be in [0, 1)")
        if self.lora_lr is not None and not self.lora_lr > 0:
            raise ConfigError(f"option --lora-lr: {self.lora_lr} must be positive")

    def targets(self) -> list[str] | None:
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()] if self.lora_targets else None


@register_strategy
class Lora(Strategy):
    name = "lora"
    summary = "LoRA adapters (peft) in the frozen backbone + new head; saved with the head; --merge for inference"
    Options = LoraOptions
    compared_by_default = True

    @classmethod
    def search_space(cls, trial: Any, cfg: Any) -> dict[str, Any]:
        return super().search_space(trial, cfg) | {"lora_r": trial.suggest_categorical("lora_r", [4, 8, 16])}

    def prepare(self, ctx: FitContext) -> None:
        o = self.opts
        self.tuner = add_lora(ctx.backbone, o.lora_r, o.lora_alpha, o.lora_dropout, o.targets())

    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None:
        self.frozen_bn_eval([ctx.backbone])

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        lr, backbone = self.cfg.lr, ctx.backbone
        adapters = [p for n, p in backbone.named_parameters() if "lora_" in n]
        return with_weight_decay([
            {"params": list(ctx.head.parameters()), "lr": lr * self.cfg.head_lr_mult, "name": "head"},
            {"params": adapters, "lr": self.opts.lora_lr or lr * (5 if backbone.modality == "text" else 1), "name": "lora"},
        ], self.cfg.weight_decay)

    def finish(self, ctx: FitContext) -> Outcome:
        n_adapter = adapter_parameters(ctx.backbone)
        n_base = sum(p.numel() for p in ctx.backbone.parameters()) - n_adapter
        ctx.info.update({"adapter_parameters": n_adapter, "backbone_parameters": n_base,
                         "adapter_fraction": round(n_adapter / max(1, n_base), 6),
                         "lora_targets": len(ctx.backbone.spec["lora"]["targets"]), "merged": self.opts.merge})
        save_adapter(ctx, self.tuner)
        if self.opts.merge:
            merge_lora(ctx.backbone, self.tuner)
        return Outcome(summary=[("adapter parameters", f"{n_adapter:,} ({100 * n_adapter / max(1, n_base):.2f}% of the backbone)")])


def save_adapter(ctx: FitContext, tuner: Any) -> None:
    """``adapter/``: peft's adapter files plus the head and the classes (what plain peft would lose)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder = ctx.run_dir / "adapter"
    folder.mkdir(parents=True, exist_ok=True)
    root = ctx.backbone.adapter_root()
    tuner.peft_config["default"].save_pretrained(str(folder))
    # keys as a PeftModel around the bare network names them, so peft can load them
    state = {f"base_model.model.{k}": v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(root).items()}
    save_file(state, str(folder / "adapter_model.safetensors"))
    save_file({k: v.detach().cpu().contiguous() for k, v in ctx.head.state_dict().items()}, str(folder / "head.safetensors"))
    head = {"task": ctx.data.task, "classes": ctx.data.classes, "num_features": ctx.backbone.num_features,
            "base_model": ctx.cfg.model, "base_weights": ctx.cfg.weights}
    atomic_write_text(folder / "labels.json", json.dumps(head, indent=2))


# -- the adapters, through peft ------------------------------------------------------------
FAMILIES: list[list[str]] = [
    ["query", "key", "value", "attention.output.dense"],
    ["q_proj", "k_proj", "v_proj", "o_proj"],
    ["q_lin", "k_lin", "v_lin", "out_lin"],
    ["attn.qkv", "attn.proj"],
]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def default_targets(root: nn.Module) -> list[str]:
    from torch import nn

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
            from torch import nn

            layers = [n for n, m in root.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))][:6]
            raise ConfigError(f"option --lora-targets: no module named {t!r}; layers LoRA can adapt here are e.g. "
                              f"{', '.join(layers)}")
        out.extend(h for h in hit if h not in out)
    return out


def add_lora(backbone: Any, r: int, alpha: float, dropout: float, targets: list[str] | None) -> Any:
    """Inject LoRA into ``backbone`` (in place); returns peft's tuner (for ``merge_and_unload``)."""
    from peft import LoraConfig, LoraModel

    root = backbone.adapter_root()
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
    root = backbone.adapter_root()
    root.__dict__.pop("peft_config", None)
    spec = dict(backbone.spec)
    spec.pop("lora", None)
    backbone.spec = spec


def adapter_parameters(backbone: nn.Module) -> int:
    return sum(p.numel() for n, p in backbone.named_parameters() if "lora_" in n)


@register_adapter("lora")
def _rebuild_lora(backbone: Any, settings: dict[str, Any]) -> None:
    """A run saved with its (unmerged) adapters: the same modules get them again before its weights load."""
    add_lora(backbone, settings["r"], settings["alpha"], settings["dropout"], settings["targets"])
