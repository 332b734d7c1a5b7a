"""The `Backbone` interface and safe weight loading (the registry of families is torch-free, in `_registry`)."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError, HeadstartError


class Batcher:
    """Turns a list of examples into one model batch; every backbone's ``preprocess`` returns one.

    ``lengths``: None, or a function giving each example's size (tokens): the training loader then
    groups examples of similar length and feature extraction sorts by it, so batches pad little.
    ``resized_once``: examples decoded/resized ahead when that is the same in every epoch (images).
    """

    lengths: Callable[[list[Any]], list[int]] | None = None

    def __call__(self, items: list[Any]) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def resized_once(self, items: list[Any]) -> list[Any]:
        return items


class Backbone(nn.Module):
    """A feature extractor with the same interface for every source family.

    ``forward_features(batch) -> [B, num_features]``; ``layer_groups()`` lists
    modules shallow -> deep (freezing, discriminative LRs); ``preprocess(train)``
    turns raw items (decoded images or strings) into a batch; ``fingerprint``
    identifies weights + preprocessing for the feature cache.
    """

    modality: ClassVar[str] = "image"
    num_features: int
    spec: dict[str, Any]
    source_head: nn.Module | None = None  # the source model's classifier, when it had one
    # -- declared capabilities (read by the pipeline, engine and strategies instead of probing) --
    memory_format: ClassVar[torch.memory_format] = torch.contiguous_format  # of batches and weights in training
    default_lr: float | None = None  # a learning rate this backbone needs when the user gives none
    max_length: int | None = None  # longest input in tokens (text); None = not length-limited
    frozen_cache: ClassVar[bool] = False  # its forward can be cut after the frozen groups (`--cache-frozen`)
    data_config: dict[str, Any] | None = None  # images: size, mean, std... (timm's); enough to preprocess without the network

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "source_head":  # kept aside: not trained, not saved with the adapted model
            self.__dict__["source_head"] = value
            return
        super().__setattr__(name, value)

    def forward_features(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, batch: Any) -> torch.Tensor:
        return self.forward_features(batch)

    def layer_groups(self) -> list[nn.Module]:
        return default_layer_groups(self)

    def preprocess(self, train: bool = False, augment: str = "none") -> Callable[[list[Any]], Any]:  # pragma: no cover
        raise NotImplementedError

    def preprocess_key(self) -> str:
        """Describes eval-time preprocessing; part of the feature-cache key."""
        return ""

    def adapter_root(self) -> nn.Module:
        """The network inside this wrapper where adapters (LoRA) attach."""
        return self

    def set_pool(self, pool: str) -> None:
        """Change the global pooling of the features (``avg`` = the source model's own); recorded in ``spec``."""
        if pool != "avg":
            raise ConfigError(f"option --pool: {pool} is only available for image backbones; use --pool avg")

    def save_assets(self, folder: Path) -> None:
        """Write what `rebuild_backbone` needs besides the weights (tokenizer, config)."""

    def reinit(self) -> None:
        """Random re-initialisation (the from-scratch baseline)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode())
        h.update(self.preprocess_key().encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:20]


def default_layer_groups(module: nn.Module) -> list[nn.Module]:
    """Parameterised children shallow -> deep, with Sequential containers expanded one level.

    Works for the plain "stem, stages of blocks, pool, classifier" networks most
    in-house models are; a model can override by defining ``layer_groups()``.
    """
    own = getattr(module, "net", module)
    if hasattr(own, "layer_groups") and own is not module:
        return list(own.layer_groups())
    groups: list[nn.Module] = []
    for child in own.children():
        if not any(p.numel() for p in child.parameters()):
            continue
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 1:
            groups.extend(c for c in child if any(True for _ in c.parameters()))
        else:
            groups.append(child)
    if len(groups) == 1 and len(list(groups[0].children())) > 1:
        return default_layer_groups(groups[0])
    return groups


def strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DataParallel's ``module.`` (and torch.compile's ``_orig_mod.``) prefixes."""
    out = {}
    for k, v in sd.items():
        for pre in ("module.", "_orig_mod."):
            while k.startswith(pre):
                k = k[len(pre):]
        out[k] = v
    return out


def unpickling_reason(e: BaseException) -> str:
    """The useful part of torch's weights-only refusal (e.g. "Unsupported global: GLOBAL os.system")."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        # keep what was refused, drop torch's advice on how to allow it
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0].split(". Please", 1)[0]
    return " ".join(text.split())[:160] or e.__class__.__name__


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read weights without executing pickled code: safetensors or ``weights_only`` torch.load."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise HeadstartError(f"option --weights: {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return strip_prefixes(load_file(str(p)))
        except Exception as e:  # safetensors raises its own error types
            raise HeadstartError(f"{p}: not a valid safetensors file ({e})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol N" notices from the safe unpickler
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise HeadstartError(
            f"{p}: refused to load: it is not a plain tensor checkpoint ({unpickling_reason(e)}). headstart never unpickles "
            "arbitrary objects; re-save it as safetensors or as a dict of tensors"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HeadstartError(f"{p}: no state dict (name -> tensor) found in this checkpoint")
    return strip_prefixes({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)})


def load_into(module: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load matching tensors; fail when nothing matches, report what did not."""
    own = module.state_dict()
    matched = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not matched:
        sample = ", ".join(list(sd)[:3])
        raise HeadstartError(
            f"{source}: none of its tensors fit this architecture (checkpoint keys look like: {sample}); "
            "is it the right model/factory?"
        )
    missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if missing:
        from .._progress import warn

        warn(f"{source}: {len(missing)} tensor(s) of the model not in the checkpoint, left at init (e.g. {missing[0]})")
    module.load_state_dict(matched, strict=False)
