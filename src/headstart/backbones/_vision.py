"""Image backbones: a wrapped network, its data config, augmentation presets.

The data config is timm's (input size, mean, std, crop_pct, interpolation),
read from the model (``pretrained_cfg``) so that a user's own network can
declare it too. Batches are built from decoded uint8 arrays [H, W, 3].
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ._base import Backbone, Batcher

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def data_config_of(net: nn.Module, default_size: int = 224) -> dict[str, Any]:
    """timm-style data config of a network (its ``pretrained_cfg``), with ImageNet defaults."""
    cfg = dict(getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None) or {})
    size = cfg.get("test_input_size") or cfg.get("input_size") or (3, default_size, default_size)
    return {
        "input_size": tuple(int(s) for s in size),
        "mean": tuple(float(m) for m in cfg.get("mean", IMAGENET_MEAN)),
        "std": tuple(float(s) for s in cfg.get("std", IMAGENET_STD)),
        "crop_pct": float(cfg.get("crop_pct", 0.875)),
        "interpolation": str(cfg.get("interpolation", "bilinear")),
    }


def _deterministic(train: bool, augment: str) -> bool:
    return not train or augment == "none"


def build_transform(cfg: dict[str, Any], train: bool, augment: str, part: str = "all") -> Callable[[np.ndarray], torch.Tensor]:
    """Per-image transform: uint8 HWC array -> normalised float CHW tensor.

    ``part="geometry"`` is the resize/crop alone, on uint8 tensors [..., 3, H, W] (one image, or a whole
    batch of same-sized images at once); ``part="tail"`` is the rest (scale, normalise) from its output.

    Presets: ``none`` (resize + centre crop), ``light`` (random resized crop +
    horizontal flip), ``standard`` (+ shear, zoom via the crop scale, and colour
    jitter): the augmentation classic transfer-learning recipes use.
    """
    from torchvision.transforms import InterpolationMode  # here: a text fit that imports this module needs no torchvision
    from torchvision.transforms import v2 as T

    _, h, w = cfg["input_size"]
    interp = InterpolationMode.BICUBIC if cfg["interpolation"] == "bicubic" else InterpolationMode.BILINEAR
    tail = [T.ToDtype(torch.float32, scale=True), T.Normalize(cfg["mean"], cfg["std"])]
    if part == "tail":
        return T.Compose(tail)
    if _deterministic(train, augment):
        resize = int(round(min(h, w) / cfg["crop_pct"]))
        ops = [T.Resize(resize, interpolation=interp, antialias=True), T.CenterCrop((h, w))]
    elif augment == "light":
        ops = [T.RandomResizedCrop((h, w), scale=(0.35, 1.0), interpolation=interp, antialias=True), T.RandomHorizontalFlip()]
    else:
        # Shear and colour jitter cost ~2 ms and ~1 ms per image on a CPU: applied to a
        # random half of the images they keep most of the regularisation at half the cost.
        ops = [
            T.RandomResizedCrop((h, w), scale=(0.25, 1.0), interpolation=interp, antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.RandomAffine(degrees=0, shear=10)], p=0.5),
            T.RandomApply([T.ColorJitter(0.3, 0.3, 0.3)], p=0.5),
        ]
    if part == "geometry":
        return T.Compose(ops)
    pipeline = T.Compose(ops + tail)

    def apply(img: np.ndarray) -> torch.Tensor:
        return pipeline(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))

    return apply


# Resized training/validation images kept in memory at most this big (224x224 RGB: 150 KB each, ~13,000 images).
PRERESIZE_BUDGET = 2 << 30


class CatAvgMaxPool(nn.Module):
    """Global average and global max of a [B, C, H, W] map, concatenated: [B, 2C, 1, 1] (same layout as the
    ``nn.AdaptiveAvgPool2d(1)`` it replaces, so the network's own flatten still applies)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)], 1)


def _global_avg_pool(net: nn.Module) -> tuple[str, nn.Module] | None:
    """The network's last global average pooling: timm's SelectAdaptivePool2d('avg') or AdaptiveAvgPool2d(1)."""
    found = None
    for name, m in net.named_modules():
        if type(m).__name__ == "SelectAdaptivePool2d" and getattr(m, "pool_type", "") == "avg":
            found = (name, m)
        elif isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)):
            found = (name, m)
    return found


class ImageBatcher(Batcher):
    """Picklable collate: decoded uint8 arrays [H, W, 3] (or `resized_once` tensors) -> float batch [B, 3, H, W]."""

    def __init__(self, cfg: dict[str, Any], train: bool, augment: str):
        self.cfg, self.train, self.augment = cfg, train, augment
        self._tf = build_transform(cfg, train, augment)
        self._tail = build_transform(cfg, train, augment, "tail")
        self._geometry = build_transform(cfg, train, augment, "geometry") if _deterministic(train, augment) else None

    def __call__(self, items: list[np.ndarray | torch.Tensor]) -> torch.Tensor:
        # channels_last: faster convolutions on CPU (oneDNN) for the same numbers
        if all(isinstance(x, torch.Tensor) for x in items):  # resized once: scale and normalise the whole batch
            return self._tail(torch.stack(items)).contiguous(memory_format=torch.channels_last)
        if self._geometry is not None and all(isinstance(x, np.ndarray) for x in items) and len({x.shape for x in items}) == 1:
            # same-sized images (a scanned or generated data set): one resize of the whole batch, 2.5x faster
            batch = torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2)
            return self._tail(self._geometry(batch)).contiguous(memory_format=torch.channels_last)
        return torch.stack([self._tail(x) if isinstance(x, torch.Tensor) else self._tf(x) for x in items]
                           ).contiguous(memory_format=torch.channels_last)

    def resized_once(self, items: list[Any], budget_bytes: int = PRERESIZE_BUDGET) -> list[Any]:
        """The items resized and cropped once, for loaders that see them every epoch (no augmentation).

        What this batcher then gets are uint8 CHW tensors that only need scaling and normalising: decoding
        happened at load, and resizing (~1-3 ms per photo) no longer repeats each epoch. Items are returned
        unchanged when the preset is random or when the resized copies would exceed ``budget_bytes``. An image
        store's images (``data.ImageStore``) are resized into a file beside it instead, whatever their number.
        """
        _, h, w = self.cfg["input_size"]
        if self._geometry is None:
            return items
        if hasattr(items, "resized"):  # an image store (`data._store`): resized once into a file beside it
            geometry = [self.cfg["input_size"], self.cfg["crop_pct"], self.cfg["interpolation"]]  # what build_transform reads
            tag = hashlib.sha256(json.dumps(geometry, default=str).encode()).hexdigest()[:12]
            return items.resized(lambda x: self._geometry(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)),
                                 f"{h}x{w}-{tag}", (3, h, w))
        if len(items) * 3 * h * w > budget_bytes:
            return items
        return [x if isinstance(x, torch.Tensor) else self._geometry(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1))
                for x in items]

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "train": self.train, "augment": self.augment}

    def __setstate__(self, s: dict[str, Any]) -> None:
        self.__init__(s["cfg"], s["train"], s["augment"])


class ImageBackbone(Backbone):
    """A network whose ``forward`` (or ``forward_features`` + pooling) gives [B, F]."""

    modality = "image"
    memory_format = torch.channels_last  # faster convolutions on CPU (oneDNN); ImageBatcher builds such batches
    frozen_cache = True

    def __init__(self, net: nn.Module, num_features: int, spec: dict[str, Any], data_config: dict[str, Any],
                 source_head: nn.Module | None = None, pooled: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.net = net
        self.num_features = int(num_features)
        self.spec = spec
        self.data_config = data_config
        self.source_head = source_head
        self._pooled = pooled

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        if self._pooled is not None:
            return self._pooled(self.net, batch)
        out = self.net(batch)
        return out.flatten(1)

    def adapter_root(self) -> nn.Module:
        return self.net

    def set_pool(self, pool: str) -> None:
        """``avgmax``: replace the network's final global average pooling by average + max pooling.

        Twice the features from the same forward pass; for a frozen backbone the max keeps the strongest local
        responses that the average dilutes (docs/design-notes.md, "Speed"). Checked with one dummy image: a
        network that pools some other way (a class token, a functional call, a norm after the pool) is refused.
        """
        if pool == self.spec.get("pool", "avg"):
            return
        if pool != "avgmax":
            raise ConfigError(f"option --pool: {pool!r} is not available here; use avg or avgmax")
        found = _global_avg_pool(self.net)
        name = self.spec.get("name", "")
        if found is None:
            raise ConfigError(f"option --pool avgmax: {name} has no global average pooling layer to replace; use --pool avg")
        path, old = found
        if isinstance(old, nn.AdaptiveAvgPool2d):
            new: nn.Module = CatAvgMaxPool()
        else:
            from timm.layers import SelectAdaptivePool2d

            new = SelectAdaptivePool2d(pool_type="catavgmax", flatten=isinstance(old.flatten, nn.Flatten),
                                       input_fmt=getattr(old, "input_fmt", "NCHW"))
        self.net.set_submodule(path, new)
        _, h, w = self.data_config["input_size"]
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                width = self.forward_features(torch.zeros(1, 3, h, w)).shape[-1]
        except RuntimeError:  # e.g. a norm layer after the pool that expects the old width
            width = -1
        self.train(was_training)
        if width != 2 * self.num_features:
            self.net.set_submodule(path, old)
            raise ConfigError(f"option --pool avgmax: {name} does not end with its average pooling ({width} features after "
                              f"the change, {self.num_features} before); use --pool avg")
        self.num_features = width
        self.spec = {**self.spec, "pool": pool}

    def preprocess(self, train: bool = False, augment: str = "none") -> ImageBatcher:
        return ImageBatcher(self.data_config, train, augment)

    def preprocess_key(self) -> str:
        return repr(sorted(self.data_config.items()))
