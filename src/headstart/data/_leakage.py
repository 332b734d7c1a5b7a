"""Leakage between the splits: the same example, or nearly the same, on the training side and in the reported
split. A random split of data with copies in it puts some copies on both sides, and the held-out figure is
flattered (a real set of 253 brain MRI images holds 22 groups of identical files).

Every example gets two fingerprints, once per dataset (`example_hashes`, kept on the `Dataset`):

* **exact**: a hash of the content, the decoded pixels (with their shape) or the text as read;
* **near**: images, a 64-bit perceptual hash (the DCT hash of ``imagehash.phash``: resizing and re-encoding keep
  it within a few bits) within `NEAR_BITS` bits, confirmed by a 16x16 grayscale thumbnail that differs by at most
  `NEAR_MAD` grey levels per pixel on average; texts, the text lower-cased, with punctuation and repeated spaces
  removed, matched exactly.

The confirmation matters: pictures of one kind (scans, hand signs against one wall) share their low frequencies,
and the hash alone calls distinct ones copies. Measured here (tests/test_leakage.py and the sign-language
digits): a copy resized and saved again as JPEG differs by 0.3-0.5 grey levels; two shots of one hand sign taken
in a row by 11-24; two synthetic test pictures of one class by at least 3.4.

`find_leaks` compares the training and selection splits with the reported one; `without_leaks` (``--dedupe``)
drops the training-side copies. Both run in every fit, on the split that fit scores (each ``--cv`` fold too).
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from .._progress import track
from ._dataset import Dataset
from ._store import ImageStore

NEAR_BITS = 8  # of 64: a near-duplicate image's perceptual hash differs from the other's in at most this many bits
NEAR_MAD = 2.0  # and their 16x16 grayscale thumbnails by at most this many grey levels (of 255) per pixel, on average
THUMB = 16
SHOWN = 20  # groups listed in metrics.json and the report (all are counted)


def _exact(item: Any) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    if isinstance(item, np.ndarray):
        h.update(str(item.shape).encode())
        h.update(np.ascontiguousarray(item).tobytes())
    else:
        h.update(("\x1f".join(item) if isinstance(item, tuple) else str(item)).encode("utf-8", "surrogatepass"))
    return h.digest()


def normalise_text(text: Any) -> str:
    """Lower case, accents folded, punctuation dropped, spaces collapsed: what near-duplicate texts share."""
    t = "\x1f".join(text) if isinstance(text, tuple) else str(text)
    t = unicodedata.normalize("NFKD", t.lower())
    t = "".join(c for c in t if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s\x1f]", " ", t)).strip()


def _near(item: np.ndarray) -> tuple[int, np.ndarray]:
    """An image's perceptual hash (as an int) and its grayscale thumbnail."""
    import imagehash
    from PIL import Image

    img = Image.fromarray(item.squeeze() if item.ndim == 3 and item.shape[-1] == 1 else item)
    bits = imagehash.phash(img).hash.flatten()
    thumb = np.asarray(img.convert("L").resize((THUMB, THUMB), Image.BILINEAR), dtype=np.uint8)
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0]), thumb


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (numpy's own where it has it, 2.0 and later)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1)


def _image_hashes(items: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Both fingerprints of images, read a chunk at a time (the images are never all in memory)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    exact, near, thumbs = [], [], []
    step = 512
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) as pool:  # PIL's resize releases the GIL
        for start in track(range(0, len(items), step), -(-len(items) // step), "hashing images for duplicates",
                           min_total=2):
            chunk = [items[i] for i in range(start, min(start + step, len(items)))]
            exact.extend(_exact(x) for x in chunk)
            for h, t in pool.map(_near, chunk):
                near.append(h)
                thumbs.append(t)
    return {"exact": np.array(exact, dtype="V16"), "near": np.array(near, dtype=np.uint64),
            "thumb": np.stack(thumbs) if thumbs else np.zeros((0, THUMB, THUMB), np.uint8)}


def _stored_hashes(store: ImageStore) -> dict[str, np.ndarray]:
    """The fingerprints of every image of a store, computed once and kept beside its pixels (``hashes.npz``)."""
    import io

    path = store.folder / "hashes.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    whole = ImageStore(store.folder)
    got = _image_hashes(whole)
    full = {k: np.zeros((len(whole.index),) + v.shape[1:], dtype=v.dtype) for k, v in got.items()}
    for k, v in got.items():
        full[k][whole.rows] = v
    buf = io.BytesIO()
    np.savez(buf, **full)
    atomic_write_bytes(path, buf.getvalue())
    return full


def example_hashes(ds: Dataset) -> dict[str, np.ndarray]:
    """Both fingerprints of every example (computed once per dataset, then kept on it; an image store keeps them
    on disk for the next run on the same files)."""
    if ds.hashes is not None:
        return ds.hashes
    if ds.modality == "image":
        if isinstance(ds.items, ImageStore):
            full = _stored_hashes(ds.items)
            got = {k: v[ds.items.rows] for k, v in full.items()}
        else:
            got = _image_hashes(ds.items)
        ds.hashes = got
        return ds.hashes
    exact, near = np.empty(len(ds.items), np.uint64), np.empty(len(ds.items), np.uint64)
    for i, x in enumerate(ds.items):  # 8 bytes each, not a string per text: a table of a million rows stays small
        exact[i], near[i] = _key64(_exact(x)), _key64(_exact(normalise_text(x)))
    ds.hashes = {"exact": exact, "near": near}
    return ds.hashes


def _key64(digest: bytes) -> int:
    """A 64-bit key: the first 8 bytes of a digest (a million examples collide with odds of about 1 in 10^7)."""
    return int.from_bytes(digest[:8], "little")


def _same(keys: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict[int, list[int]]:
    """Each reported position whose key some training position shares, with those training positions: by sorting,
    not by a dictionary of every key (which costs about 150 bytes an example)."""
    order = train[np.argsort(keys[train], kind="stable")]
    ranked = keys[order]
    lo = np.searchsorted(ranked, keys[test], side="left")
    hi = np.searchsorted(ranked, keys[test], side="right")
    return {int(j): [int(i) for i in order[a:b]] for j, a, b in zip(test, lo, hi) if b > a}


def find_leaks(ds: Dataset) -> dict[str, Any]:
    """Examples of the training or selection split that duplicate one of the reported split.

    ``groups``: per reported example with copies, its ref, the training-side refs, and whether the match is
    exact or near (first `SHOWN`); ``training_positions``: every training-side copy (indices into ``ds.items``);
    counts of exact and near matches, and the seconds the check took."""
    t0 = time.perf_counter()
    train = np.concatenate([ds.train_idx, ds.val_idx])
    test = ds.test_idx
    out: dict[str, Any] = {"exact": 0, "near": 0, "groups": [], "training_positions": []}
    if not len(train) or not len(test):
        return {**out, "seconds": 0.0}
    h = example_hashes(ds)
    exact = h["exact"] if h["exact"].dtype == np.uint64 else np.ascontiguousarray(h["exact"]).view("<u8")[::2]  # V16
    matches: dict[int, tuple[str, list[int]]] = {j: ("exact", idx) for j, idx in _same(exact, train, test).items()}
    rest = np.array([int(j) for j in test if int(j) not in matches], dtype=np.int64)
    if ds.modality == "image":
        tr_hash = h["near"][train]
        for j in rest:  # Hamming distance of 64-bit hashes, one reported image against every training one
            close = train[_popcount(np.bitwise_xor(tr_hash, h["near"][j])) <= NEAR_BITS]
            if len(close):  # confirmed by the thumbnails
                mad = np.abs(h["thumb"][close].astype(np.int16) - h["thumb"][j].astype(np.int16)).mean(axis=(1, 2))
                close = close[mad <= NEAR_MAD]
            if len(close):
                matches[int(j)] = ("near", [int(c) for c in close])
    else:
        matches.update((j, ("near", idx)) for j, idx in _same(h["near"], train, rest).items())
    copies = sorted({i for _, idx in matches.values() for i in idx})
    out.update(exact=sum(1 for k, _ in matches.values() if k == "exact"), near=sum(1 for k, _ in matches.values() if k == "near"),
               training_positions=copies, seconds=round(time.perf_counter() - t0, 3))
    out["groups"] = [{"held_out": ds.refs[j], "training": [ds.refs[i] for i in idx[:5]], "copies": len(idx), "match": kind}
                     for j, (kind, idx) in sorted(matches.items())[:SHOWN]]
    return out


def leak_summary(leaks: dict[str, Any], dropped: bool) -> dict[str, Any]:
    """What `Dataset.leakage` keeps of `find_leaks`: the counts and the groups shown, not every position."""
    return {k: v for k, v in leaks.items() if k != "training_positions"} | {
        "training_copies": len(leaks["training_positions"]), "dropped": bool(dropped and leaks["training_positions"])}


def without_leaks(ds: Dataset, leaks: dict[str, Any]) -> Dataset:
    """``ds`` without the training-side copies of reported examples (``--dedupe``); the reported split is kept."""
    import dataclasses

    drop = np.asarray(leaks["training_positions"], dtype=np.int64)
    return dataclasses.replace(ds, train_idx=np.setdiff1d(ds.train_idx, drop), val_idx=np.setdiff1d(ds.val_idx, drop))


__all__ = ["NEAR_BITS", "NEAR_MAD", "example_hashes", "find_leaks", "leak_summary", "normalise_text", "without_leaks"]
