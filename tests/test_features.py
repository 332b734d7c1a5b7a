from __future__ import annotations

import numpy as np
import torch

from headstart.backbones import build_backbone
from headstart.features import extract, extract_items


def _count_forwards(bb) -> list[int]:
    calls = [0]
    target = bb.bag if hasattr(bb, "bag") else bb.model
    target.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_second_extraction_is_served_from_cache(tmp_path) -> None:
    bb = build_backbone("minilm")
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(50)]
    calls = _count_forwards(bb)
    a, info_a = extract(bb, texts, "data-fp", tmp_path, batch_size=16)
    n = calls[0]
    assert n == 4 and not info_a["cached"]
    b, info_b = extract(bb, texts, "data-fp", tmp_path, batch_size=16)
    assert calls[0] == n and info_b["cached"]  # the backbone did not run again
    assert np.array_equal(a, b)
    with torch.no_grad():  # other weights, other key
        bb.model.embeddings.word_embeddings.weight.mul_(1.01)
    _, info_c = extract(bb, texts, "data-fp", tmp_path, batch_size=16)
    assert not info_c["cached"]


def test_length_sorted_extraction_returns_input_order() -> None:
    bb = build_backbone("minilm")
    texts = ["a much longer sentence with many many words in it to pad", "short", "medium length one"]
    together = extract_items(bb, texts, batch_size=2)
    alone = np.stack([extract_items(bb, [t], batch_size=1)[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)  # dynamic padding + masking change nothing
