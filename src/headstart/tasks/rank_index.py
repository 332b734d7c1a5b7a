"""What `rank` predicted, kept by (data, backbone) fingerprint so that a later `fit` of the same pair shows it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .._io import atomic_write_text


def _index_path(cache_dir: Path, data_fp: str) -> Path:
    return cache_dir / "transferability" / f"{data_fp}.json"


def remember(cache_dir: Path, data_fp: str, records: list[dict[str, Any]], attrs: dict[str, Any], fingerprints: dict[str, str],
             out_dir: Path) -> None:
    """Record each candidate's scores by (data, backbone) fingerprint so a later `fit` can show them."""
    path = _index_path(cache_dir, data_fp)
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        known = {}
    for rec in records:
        known[fingerprints[rec["candidate"]]] = {
            "rank": rec["rank"], "of": len(records), "by": attrs["by"], "goal": attrs["goal"], "ranking": str(out_dir),
            "scores": {m: rec.get(m) for m in attrs["metrics"]}, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(path, json.dumps(known, indent=2))


def predicted_for(cache_dir: Path, data_fp: str, backbone: Any) -> dict[str, Any] | None:
    """What `rank` predicted for this backbone (its weights as loaded) on this data, if it was ranked."""
    path = _index_path(cache_dir, data_fp)
    if not path.is_file():
        return None  # no ranking of this data: skip hashing the weights
    try:
        return json.loads(path.read_text()).get(backbone.fingerprint)
    except (OSError, json.JSONDecodeError):
        return None


__all__ = ["predicted_for", "remember"]
