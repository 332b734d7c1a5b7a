"""``scratch:<arch>``: small networks from random init, the baselines every comparison needs.

* ``scratch:cnn`` – four conv-BN-ReLU blocks (32-64-128-256), global average
  pooling; 64x64 input (``scratch:cnn@96`` for another size); ``scratch:cnn-w8``
  starts at 8 channels (8-16-32-64, ~25k parameters: a distillation student).
* ``scratch:bow`` – a bag of hashed word unigrams and bigrams, embedded and
  averaged (fastText-style); the usual from-scratch text baseline.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import HeadstartError
from ._base import Backbone, Batcher
from ._registry import register_backbone, register_rebuild
from ._vision import ImageBackbone

ARCHS = ("cnn", "cnn-w<width>", "bow")


def _block(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True), nn.MaxPool2d(2))


class SmallCNN(nn.Module):
    def __init__(self, size: int = 64, width: int = 32):
        super().__init__()
        w = width
        self.stages = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 8 * w
        self.pretrained_cfg = {"input_size": (3, size, size), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 1.0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(x)).flatten(1)


_TOKEN = re.compile(r"[a-z0-9']+")


class BowBatcher(Batcher):
    """list of str (or of pairs) -> (token ids, offsets) for ``nn.EmbeddingBag``."""

    def __init__(self, buckets: int):
        self.buckets = buckets

    def ids(self, text: str | tuple[str, str], side: str = "") -> list[int]:
        """Hashed words and word bigrams; the second text of a pair hashes its own (``b:`` prefixed) buckets."""
        if isinstance(text, (tuple, list)):
            return self.ids(text[0]) + self.ids(text[1], "b:")
        words = _TOKEN.findall(text.lower())
        grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
        return [zlib.crc32((side + g).encode()) % self.buckets for g in grams] or [0]

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = [self.ids(t) for t in texts]
        offsets = torch.tensor([0] + [len(x) for x in ids[:-1]]).cumsum(0)
        return {"input_ids": torch.tensor([i for x in ids for i in x]), "offsets": offsets}

    def lengths(self, texts: list[str]) -> list[int]:
        return [len(self.ids(t)) for t in texts]


class BowBackbone(Backbone):
    modality = "text"

    default_lr = 2e-2  # a randomly initialised bag of embeddings needs a far larger step than fine-tuning

    def __init__(self, buckets: int = 2**16, dim: int = 64):
        super().__init__()
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean")
        nn.init.normal_(self.bag.weight, std=0.1)
        self.buckets, self.num_features = buckets, dim
        self.spec = {"kind": "scratch", "name": "bow"}

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.bag(batch["input_ids"], batch["offsets"])

    def layer_groups(self) -> list[nn.Module]:
        return [self.bag]

    def preprocess(self, train: bool = False, augment: str = "none") -> BowBatcher:
        return BowBatcher(self.buckets)

    def preprocess_key(self) -> str:
        return f"bow|{self.buckets}"

    def reinit(self) -> None:
        nn.init.normal_(self.bag.weight, std=0.1)


def _make(arch: str) -> Backbone:
    name, _, size = arch.partition("@")
    cnn = re.fullmatch(r"cnn(?:-w(\d+))?", name)
    if cnn:
        s = int(size) if size.isdigit() else 64
        width = int(cnn.group(1) or 32)
        if not 1 <= width <= 512:
            raise HeadstartError(f"option --model: scratch:{arch}: width {width} must be in 1..512")
        net = SmallCNN(s, width)
        return ImageBackbone(net, net.num_features, {"kind": "scratch", "name": arch}, {
            "input_size": net.pretrained_cfg["input_size"], "mean": net.pretrained_cfg["mean"],
            "std": net.pretrained_cfg["std"], "crop_pct": 1.0, "interpolation": "bilinear"})
    if name == "bow":
        return BowBackbone()
    raise HeadstartError(f"option --model: scratch:{arch} is unknown; scratch architectures are {', '.join(ARCHS)}")


@register_backbone("scratch")
def scratch_backbone(arch: str, *, weights: str | None = None, pretrained: bool = True) -> Backbone:
    return _make(arch or "cnn")


@register_rebuild("scratch")
def _rebuild(spec: dict[str, Any], assets: Path) -> Backbone:
    return _make(spec["name"])
