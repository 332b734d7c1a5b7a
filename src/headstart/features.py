"""Batched feature extraction with an on-disk cache.

A frozen backbone is run once per (backbone weights + preprocessing, data):
the cache key hashes the backbone's fingerprint and the dataset's fingerprint
(file path, size and mtime of every image, or every text). Ranking, distances,
linear probes and prototypes all reuse the same ``.npy`` file, which is loaded
memory-mapped.

Texts are sorted by token length before batching so that each batch is padded
only to its own longest text; results are returned in the original order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._io import atomic_write_text, default_cache_dir
from ._progress import track

if TYPE_CHECKING:  # the declared interface; features never builds a backbone
    from .backbones import Backbone


def cache_key(backbone: Backbone, data_fingerprint: str, tag: str = "") -> str:
    h = hashlib.sha256()
    for part in (backbone.fingerprint, backbone.preprocess_key(), data_fingerprint, "v1", tag):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _order(items: list[Any], batcher: Any) -> np.ndarray:
    if batcher.lengths is not None:
        return np.argsort(np.asarray(batcher.lengths(items)), kind="stable")
    return np.arange(len(items))


class _Features(torch.nn.Module):
    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(batch)


@contextlib.contextmanager
def folded_batchnorm(backbone: Backbone) -> Iterator[bool]:
    """For an eval-mode pass over images: ``backbone.forward_features`` runs a copy of the network with every
    BatchNorm folded into the convolution before it (torch.fx graph fusion): the same numbers (to float
    rounding) in fewer passes over memory: MobileNetV1 x0.25 runs 291 instead of 225 images/s here. The
    copy holds its own weights for the pass. A network that torch.fx cannot trace (data-dependent control
    flow) runs as it is, and so does a network whose modules' forward is replaced for this pass (the frozen-layer
    cache cuts the network at a module, which a traced copy no longer calls). Yields whether it was folded."""
    if (backbone.modality != "image" or backbone.training or "forward_features" in backbone.__dict__
            or any("forward" in m.__dict__ for m in backbone.modules())):
        yield False
        return
    try:
        from torch.fx.experimental.optimization import fuse

        folded = fuse(torch.fx.symbolic_trace(_Features(backbone))).to(memory_format=torch.channels_last)
    except Exception:  # noqa: BLE001 - tracing is an optimisation; any failure means "run it unfolded"
        yield False
        return
    backbone.forward_features = folded.forward  # an instance attribute shadows the method for this pass
    try:
        yield True
    finally:
        del backbone.forward_features


def in_batches(items: Sequence[Any], batcher: Any, batch_size: int, description: str) -> Iterator[tuple[np.ndarray, Any]]:
    """(positions, batch) over ``items`` in batches, length-sorted where the batcher knows lengths, with progress."""
    order = _order(items, batcher)
    starts = range(0, len(items), batch_size)
    for s in track(starts, len(starts), description, min_total=3):
        idx = order[s : s + batch_size]
        yield idx, batcher([items[i] for i in idx])


def run_batches(backbone: Backbone, items: Sequence[Any], width: int, fn: Callable[[Any], torch.Tensor] | None = None,
                batch_size: int = 64, description: str = "extracting features", out: np.ndarray | None = None) -> np.ndarray:
    """Eval-mode, no-augmentation pass: ``fn(batch) -> [B, width]`` over items, in the items' order.

    ``fn=None`` is ``backbone.forward_features``, looked up per batch (so that `folded_batchnorm` applies);
    a given ``fn`` that needs the features should call ``backbone.forward_features`` itself.

    Length-sorted where the batcher knows lengths (each batch padded only to its own longest); images channels_last.
    Shared by feature extraction and prediction. ``out`` (e.g. a memory-mapped file) receives the
    rows as they are computed; ``items`` may be any sequence, read one batch at a time.
    """
    was_training = backbone.training
    backbone.eval()
    backbone.to(memory_format=backbone.memory_format)  # outside inference mode: converted weights must stay trainable
    out = np.empty((len(items), width), dtype=np.float32) if out is None else out
    device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
    # Folding costs a trace of the network (~0.1 s): worth it for passes over data, not a single request.
    fold = folded_batchnorm(backbone) if len(items) > batch_size else contextlib.nullcontext(False)
    with fold, torch.inference_mode():
        for n, (idx, batch) in enumerate(in_batches(items, backbone.preprocess(train=False), batch_size, description)):
            batch = {k: v.to(device) for k, v in batch.items()} if isinstance(batch, dict) else batch.to(device)
            out[idx] = (backbone.forward_features(batch) if fn is None else fn(batch)).float().cpu().numpy()
            if n % 64 == 63:
                released(out)  # a memory-mapped ``out``: the rows written so far leave the resident set
    backbone.train(was_training)
    return out


def predict_outputs(backbone: Backbone, head: Any, items: list[Any], batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, C] (values for regression) through backbone + head, in the order of ``items``."""
    head.eval()
    width = 2 if head.task == "binary" else head.num_outputs
    return run_batches(backbone, items, width, lambda b: head.outputs(head(backbone.forward_features(b))),
                       batch_size, "predicting")


def head_outputs(head: Any, features: np.ndarray, idx: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
    """What `predict_outputs` gives, from features the backbone already computed (a frozen backbone's cache), for
    rows ``idx`` (default all); a memory-mapped cache is read a chunk at a time (`chunks`)."""
    head.eval()
    with torch.inference_mode():
        out = head.outputs(head(torch.zeros((0, features.shape[1])))).numpy()
        out = np.empty((len(features) if idx is None else len(idx), out.shape[1]), dtype=out.dtype)
        for at, x in chunks(features, idx, batch_size):
            out[at] = head.outputs(head(torch.as_tensor(x))).numpy()
    return out


def read_rows(features: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``features[idx]`` as float32 in memory, read a chunk at a time (`chunks`)."""
    out = np.empty((len(idx), features.shape[1]), dtype=np.float32)
    for at, x in chunks(features, idx):
        out[at] = x
    return out


def released(rows: np.ndarray) -> None:
    """Drop a memory-mapped array's pages from this process: they stay in the file (written first) and in the
    OS's page cache, but no longer count as this process's resident memory, which would otherwise grow with
    every row read or written until the whole file is resident (the data-larger-than-memory path,
    docs/data.md). No-op for an array in memory."""
    mm = getattr(rows, "_mmap", None)  # np.memmap's mapping (np.load(..., mmap_mode=...) returns one)
    if mm is None or not hasattr(mm, "madvise"):
        return
    if rows.flags.writeable:
        rows.flush()
    mm.madvise(mmap.MADV_DONTNEED)


def chunks(features: np.ndarray, idx: np.ndarray | None = None, size: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions in ``idx``, float32 rows) of ``features[idx]`` (default all rows) in chunks of ``size``, each a
    copy in memory; a memory-mapped array's pages are released after every chunk (`released`), so that reading
    a cache larger than memory holds one chunk at a time. Rows are read in ascending order."""
    idx = np.arange(len(features)) if idx is None else np.asarray(idx)
    order = np.argsort(idx, kind="stable")
    for s in range(0, len(idx), size):
        at = order[s : s + size]
        rows = idx[at]
        got = np.array(features[rows[0] : rows[-1] + 1] if rows[-1] - rows[0] + 1 == len(rows) else features[rows],
                         dtype=np.float32)
        released(features)
        yield at, got


def extract_items(backbone: Backbone, items: list[Any], batch_size: int = 64, description: str = "extracting features") -> np.ndarray:
    """Run the backbone over items: float32 [N, num_features]."""
    return run_batches(backbone, items, backbone.num_features, None, batch_size, description)


def extract(
    backbone: Backbone,
    items: list[Any],
    data_fingerprint: str,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    *,
    fn: Callable[[Any], torch.Tensor] | None = None,
    width: int | None = None,
    tag: str = "",
    source: str = "",
    shard: tuple[int, int] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features of all items, from the cache when present. Returns (features, info).

    ``info`` has ``cached`` (bool), ``seconds`` and ``path``. By default the features
    are ``backbone.forward_features``; ``fn`` (output ``[B, width]``) caches another
    function of the batch under its own ``tag`` (e.g. the output of frozen lower layers). ``source`` names the
    data for `headstart cache` (what an entry was made from).

    ``shard=(i, k)``: only rows [i*N/k, (i+1)*N/k), for k processes (or machines sharing the cache folder)
    that fill one entry together; each returns its own rows, and the one that finishes last joins the k parts
    into the entry (``info["joined"]``). An entry already complete is returned whole, as without ``shard``.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(backbone, data_fingerprint, tag)
    width = width or backbone.num_features
    path = folder / "features" / f"{key}.npy"
    t0 = time.perf_counter()
    if path.is_file():
        feats = np.load(path, mmap_mode="r")
        if feats.shape == (len(items), width):
            with contextlib.suppress(OSError):  # "last used", for `headstart cache` and --max-size
                os.utime(path.with_suffix(".json"))
            return feats, {"cached": True, "seconds": time.perf_counter() - t0, "path": str(path)}
    meta = {"backbone": backbone.spec, "source": source, "n": len(items), "dim": width, "tag": tag}
    description = "extracting features" if fn is None else f"caching {tag or 'outputs'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if shard is not None:
        return _extract_shard(backbone, items, path, width, fn, batch_size, shard, meta, description, t0)
    _fill(path, len(items), width, lambda rows: run_batches(backbone, items, width, fn, batch_size, description, out=rows))
    atomic_write_text(path.with_suffix(".json"), json.dumps({**meta, "created": time.time()}))
    # memory-mapped: the pages are the OS's to keep or drop
    return np.load(path, mmap_mode="r"), {"cached": False, "seconds": time.perf_counter() - t0, "path": str(path)}


def cached_rows(backbone: Backbone, data_fingerprint: str, n: int, idx: np.ndarray,
                cache_dir: str | Path | None = None) -> np.ndarray | None:
    """Rows ``idx`` of a complete cache entry of all ``n`` items, as float64, or None when there is none.

    For a caller that needs some of the items (`rank` scores a sample): an entry already made for the whole
    data (by `fit`, or by `headstart extract --pool avg` in shards) is read instead of extracting again.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / "features" / f"{cache_key(backbone, data_fingerprint)}.npy"
    if not path.is_file():
        return None
    feats = np.load(path, mmap_mode="r")
    return np.array(feats[idx], dtype=np.float64) if feats.shape == (n, backbone.num_features) else None


def _fill(path: Path, n: int, width: int, write: Callable[[np.ndarray], Any]) -> None:
    """``write(rows)`` into a memory-mapped temp file [n, width], renamed to ``path`` when complete: peak memory
    is one batch, not the dataset, and an interrupted extraction leaves no half-written cache entry."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    try:
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, width))
        write(rows)
        rows.flush()
        del rows
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def shard_bounds(n: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rows [lo, hi) of shard ``i`` of ``k`` over ``n`` rows: contiguous, sizes differing by at most one."""
    i, k = shard
    return i * n // k, (i + 1) * n // k


def _extract_shard(backbone: Backbone, items: list[Any], path: Path, width: int, fn: Any, batch_size: int,
                   shard: tuple[int, int], meta: dict[str, Any], description: str, t0: float) -> tuple[np.ndarray, dict[str, Any]]:
    """One shard's rows into ``.<key>.shard-i-of-k.npy``; the process that finds all k shards there joins them
    into the cache entry every later fit, rank or distance reads (see `extract`)."""
    i, k = shard
    lo, hi = shard_bounds(len(items), shard)
    part = path.with_name(f".{path.stem}.shard-{i}-of-{k}.npy")
    if not (part.is_file() and np.load(part, mmap_mode="r").shape == (hi - lo, width)):
        _fill(part, hi - lo, width,
              lambda rows: run_batches(backbone, items[lo:hi], width, fn, batch_size, f"{description} (shard {i + 1}/{k})", out=rows))
    parts = [path.with_name(f".{path.stem}.shard-{j}-of-{k}.npy") for j in range(k)]
    info = {"cached": False, "seconds": time.perf_counter() - t0, "path": str(path), "shard": [i, k], "rows": [lo, hi],
            "joined": False}
    if not all(q.is_file() for q in parts):
        return np.load(part, mmap_mode="r"), info  # the last shard to finish joins them
    lock = path.with_name(f".{path.stem}.joining")
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # two shards finished at once: the other process joins
        return np.load(part, mmap_mode="r"), info
    try:
        def join(rows: np.ndarray) -> None:
            for j, q in enumerate(parts):
                a, b = shard_bounds(len(items), (j, k))
                rows[a:b] = np.load(q, mmap_mode="r")

        if not path.is_file():
            _fill(path, len(items), width, join)
            atomic_write_text(path.with_suffix(".json"), json.dumps({**meta, "created": time.time(), "shards": k}))
        for q in parts:
            q.unlink(missing_ok=True)
    finally:
        lock.unlink(missing_ok=True)
    return np.load(path, mmap_mode="r"), {**info, "joined": True, "seconds": time.perf_counter() - t0}


# -- the cache on disk: what `headstart cache` lists and trims ------------------------------------------
def cache_entries(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every cached array, most recently used first: key, path, bytes, what it was made from, created, last used."""
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "features"
    entries = []
    for npy in folder.glob("*.npy"):
        part = re.fullmatch(r"\.(\w+)\.shard-(\d+)-of-(\d+)", npy.stem)
        if npy.name.startswith(".") and not part:
            continue  # an extraction in progress (or killed): not an entry
        meta_path, array = npy.with_suffix(".json"), npy.stat()
        try:
            described = meta_path.stat()
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # no description (or a damaged one): the array alone
            described, meta = None, {}
        if part:  # a finished shard whose siblings have not all finished: listed, so that it can be cleared
            with contextlib.suppress(OSError, ValueError):
                n, dim = np.load(npy, mmap_mode="r").shape
                meta = {"n": n, "dim": dim}
            meta["tag"] = f"shard {int(part.group(2)) + 1}/{part.group(3)} of {part.group(1)[:12]}, waiting for the others"
        spec = meta.get("backbone") or {}
        entries.append({
            "key": npy.stem, "path": str(npy), "bytes": array.st_size + (described.st_size if described else 0),
            "model": f"{spec.get('kind', '?')}:{spec.get('name', '')}".rstrip(":"), "source": meta.get("source", ""),
            "tag": meta.get("tag", ""), "shape": [meta.get("n"), meta.get("dim")],
            "created": meta.get("created", array.st_mtime), "last_used": (described or array).st_mtime,
        })
    return sorted(entries, key=lambda e: -e["last_used"])


def remove_entries(entries: list[dict[str, Any]]) -> int:
    """Delete cache entries (array and description, or an image store's folder); returns the bytes freed."""
    import shutil

    freed = 0
    for e in entries:
        npy = Path(e["path"])
        if npy.is_dir():
            shutil.rmtree(npy, ignore_errors=True)
        else:
            for p in (npy, npy.with_suffix(".json")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        freed += e["bytes"]
    return freed


def trim_cache(max_bytes: int, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Remove the least recently used of ``entries`` until they hold at most ``max_bytes``; returns those removed."""
    total, removed = 0, []
    for e in sorted(entries, key=lambda e: -e["last_used"]):  # most recently used first: the newest that fit are kept
        total += e["bytes"]
        if total > max_bytes:
            removed.append(e)
    remove_entries(removed)
    return removed

