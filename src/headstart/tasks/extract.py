"""`headstart extract DATA --model M [--shard i/k]`: fill the feature cache ahead of `linear`, `rank` or `distance`.

A large folder's features can be extracted by k processes (or machines sharing the cache folder), each
running ``--shard i/k`` on its own contiguous part of the examples; the last to finish joins the parts into
the one cache entry a later ``headstart fit DATA --model M --strategy linear`` (or, with ``--pool avg``,
``rank``/``distance``) reads instead of extracting. The entry is the one the fit would have made: the data,
the backbone and its preparation (pooling, longest text, seeded weights) are set up exactly as the fit
pipeline sets them up (`resolve`), so the cache key is the same.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

from ..backbones import preflight
from ..data import load_data
from ..errors import ConfigError
from ..training.strategies import get_strategy
from .fit import as_config, backbone_for, resolve


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/k"`` (0-based shard i of k) as a pair, or a clear error."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ConfigError(f"option --shard: {text!r} is not i/k with 0 <= i < k (e.g. 0/4 ... 3/4 for four processes)")
    return int(m.group(1)), int(m.group(2))


def extract_features(data: str, *, model: str = "auto", shard: str | tuple[int, int] = (0, 1), strategy: str = "linear",
                     **options: Any) -> dict[str, Any]:
    """Features of ``data`` under ``model`` into the cache, prepared as ``fit --strategy STRATEGY`` prepares them.

    ``options``: `FitConfig` fields that decide the data or the backbone (``weights``, ``pool``, ``max_length``,
    ``seed``, ``text_col``, ``cache_dir``, ``batch_size``...). Returns what was done: rows, shard, whether this
    process joined the shards, the cache file, seconds.
    """
    from ..features import default_cache_dir, extract

    t0 = time.perf_counter()
    part = parse_shard(shard) if isinstance(shard, str) else tuple(shard)
    cfg = as_config(data, None, {"model": model, "strategy": strategy, **options})
    strategy_cls = get_strategy(cfg.strategy)
    ds = load_data(cfg.data, **cfg.load_kwargs())
    name = cfg.model_for(ds.modality)
    cfg = dataclasses.replace(cfg, model=name)
    preflight(name, weights=cfg.weights, pretrained=cfg.pretrained)
    backbone = backbone_for(cfg, ds)
    cfg = resolve(cfg, ds, backbone, strategy_cls, Path("."))  # pooling and longest text, as the fit sets them
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    feats, info = extract(backbone, ds.items, ds.fingerprint(), cache_dir, batch_size=max(64, cfg.batch_size),
                          source=ds.name, shard=part if part[1] > 1 else None)
    lo, hi = info.get("rows", [0, len(ds.items)])
    return {"data": ds.name, "model": name, "pool": backbone.spec.get("pool", "avg"), "examples": len(ds.items),
            "shard": f"{part[0]}/{part[1]}", "rows": [int(lo), int(hi)], "dim": int(feats.shape[1]),
            "cached_before": bool(info["cached"]), "joined": bool(info.get("joined", part[1] == 1)),
            "path": info["path"], "seconds": round(time.perf_counter() - t0, 2)}


__all__ = ["extract_features", "parse_shard"]
