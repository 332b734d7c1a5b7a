"""Decoded images on disk: what image folders and image tables are read into.

An image folder is decoded once into an *image store*: one file of raw uint8 pixels, every image after the other
at the size it was decoded to (shorter side at most ``MAX_SIDE``), and an index of (offset, height, width) per
file. The store lives in the cache folder (``HEADSTART_CACHE_DIR``, ``images/<key>``), keyed by every file's path,
size and modification time and by the decoding settings: a later run on the same files (another strategy, seed or
budget; `rank`, `distance`, `evaluate`) reads it instead of decoding again. ``headstart cache`` lists and clears it.

Reading an image is one positioned read (``os.pread``) of its bytes, served from the operating system's page cache
once the file is warm: no decoding and no memory map. A memory map would count every page it ever touched in the
process's resident memory; a read keeps only the batch at hand, so peak memory stays flat as the data grows.

A training loop that sees every image at one fixed size each epoch (no augmentation) also gets the images resized
once, into a second, fixed-size file beside the store (`ImageStore.resized`), read the same way.

An interrupted build resumes: pixels, index rows and skipped files are appended a chunk at a time, and the next
build continues after the last chunk written. Two processes that build the same store at once (a distributed fit)
take turns on a lock file; the second then reads what the first wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text, default_cache_dir
from .._progress import track

FORMAT = 1  # bump when the layout or the decoding changes: old stores are then rebuilt, never misread
CHUNK = 256  # images decoded (in parallel) and appended per step; what an interrupted build loses at most
ROW = 3  # index columns: offset (-1: the file was skipped), height, width


class _Concatenable(Sequence):
    """``a + b`` of sequences read from disk is a `Chain` (a list + a store too): nothing is read."""

    def __add__(self, other: Sequence) -> Chain:
        return Chain([self, other])

    def __radd__(self, other: Sequence) -> Chain:
        return Chain([other, self])


class _FileBacked(_Concatenable):
    """A sequence read from one file with positioned reads: the file is opened on first use, never pickled (each
    DataLoader worker opens its own) and closed with the object."""

    _fd: int | None = None

    def _path(self) -> Path:
        raise NotImplementedError

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._path(), os.O_RDONLY)
        return self._fd

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_fd"} | {"_fd": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # type: ignore[arg-type]


class ImageStore(_FileBacked):
    """Images [H, W, 3] uint8 read from a store's pixel file, one positioned read each.

    ``rows`` selects and orders the store's files (`take` narrows it without reading anything); pickling keeps
    the folder and the rows, so that DataLoader workers reopen the file.
    """

    def __init__(self, folder: Path, rows: np.ndarray | None = None, *, pixels: str = "pixels.u8",
                 index: np.ndarray | None = None):
        self.folder, self.pixels = Path(folder), pixels
        self.index = np.load(self.folder / "index.npy") if index is None else index
        self.rows = np.flatnonzero(self.index[:, 0] >= 0) if rows is None else np.asarray(rows, dtype=np.int64)
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _path(self) -> Path:
        return self.folder / self.pixels

    def _bytes(self, row: int, channels: int) -> tuple[bytearray, int, int]:
        """Row ``row``'s pixels as read from the file, with its height and width."""
        offset, h, w = (int(v) for v in self.index[row])
        buf = bytearray(channels * h * w)
        if os.preadv(self._file(), [buf], offset) != len(buf):
            raise OSError(f"{self.folder / self.pixels}: truncated (row {row}); clear it with `headstart cache --clear`")
        return buf, h, w

    def read(self, row: int) -> np.ndarray:
        """The image at ``row`` of the store (not of this view)."""
        buf, h, w = self._bytes(row, 3)
        return np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        return self.read(int(self.rows[i]))

    def __iter__(self) -> Iterator[np.ndarray]:
        for r in self.rows:
            yield self.read(int(r))

    def take(self, idx: Any) -> ImageStore:
        """The images at positions ``idx`` of this view, as a view: nothing is read."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__getstate__())
        view.rows, view._fd = self.rows[np.asarray(idx, dtype=np.int64)], None
        return view

    def shapes(self) -> np.ndarray:
        """[N, 2] heights and widths, from the index."""
        return self.index[self.rows, 1:3]

    def resized(self, geometry: Callable[[np.ndarray], Any], tag: str, shape: tuple[int, int, int]) -> Sequence:
        """This view's images through ``geometry`` (a deterministic resize and crop to ``shape`` [C, H, W], returning
        a uint8 tensor), computed once for every image of the store into ``resized-<tag>.u8`` and read back as uint8
        tensors. ``tag`` names the geometry (size, crop, interpolation)."""
        c, h, w = shape
        path = self.folder / f"resized-{tag}.u8"
        size = c * h * w
        kept = np.flatnonzero(self.index[:, 0] >= 0)
        if not path.is_file() or path.stat().st_size != len(self.index) * size:
            with _lock(path.with_suffix(".lock")):
                if not path.is_file() or path.stat().st_size != len(self.index) * size:
                    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                    try:
                        with open(tmp, "wb") as f:
                            f.truncate(len(self.index) * size)
                            for r in track(kept, len(kept), "resizing images once", min_total=2000):
                                f.seek(int(r) * size)
                                out = geometry(self.read(int(r)))
                                if tuple(out.shape) != shape:
                                    raise ValueError(f"resizing gave {tuple(out.shape)}, not {shape}")
                                f.write(np.ascontiguousarray(out.numpy(), dtype=np.uint8).tobytes())
                        os.replace(tmp, path)
                    finally:
                        tmp.unlink(missing_ok=True)
        index = np.stack([np.arange(len(self.index)) * size, np.full(len(self.index), h), np.full(len(self.index), w)], 1)
        index[self.index[:, 0] < 0, 0] = -1
        return _Tensors(self.folder, self.rows, pixels=path.name, index=index, channels=c)


class _Tensors(ImageStore):
    """A resized file's rows as uint8 CHW tensors (what `ImageBatcher` scales and normalises)."""

    def __init__(self, folder: Path, rows: np.ndarray, *, pixels: str, index: np.ndarray, channels: int):
        super().__init__(folder, rows, pixels=pixels, index=index)
        self.channels = channels

    def read(self, row: int) -> Any:
        import torch

        buf, h, w = self._bytes(row, self.channels)
        return torch.frombuffer(buf, dtype=torch.uint8).view(self.channels, h, w)


class Chain(_Concatenable):
    """Sequences one after the other, read through (a training set plus a source's, or plus unlabeled data)."""

    def __init__(self, parts: list[Sequence]):
        self.parts = [q for p in parts for q in (p.parts if isinstance(p, Chain) else [p])]
        self.ends = np.cumsum([len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i) + (len(self) if i < 0 else 0)
        k = int(np.searchsorted(self.ends, i, side="right"))
        return self.parts[k][i - (int(self.ends[k - 1]) if k else 0)]


class Picked(_Concatenable):
    """Some positions of a sequence read from disk (a `Chain` of stores), as a view."""

    def __init__(self, base: Sequence, idx: Any):
        self.base, self.idx = base, np.asarray(idx, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return Picked(self.base, self.idx[i])
        return self.base[int(self.idx[i])]


def take(items: Sequence, idx: Any) -> Sequence:
    """``items`` at positions ``idx``: a view when they are read from disk (nothing read yet), else a list."""
    if isinstance(items, _Concatenable) and hasattr(items, "take"):  # an image or text store, a table's references
        return items.take(idx)
    if isinstance(items, (Chain, Picked)):
        return Picked(items, idx)
    return [items[int(i)] for i in idx]


@contextlib.contextmanager
def _lock(path: Path, poll: float = 0.2) -> Iterator[None]:
    """An exclusive lock file; a lock whose process has died is taken over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text() or "0")
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # its holder is gone
                continue
            except PermissionError:
                pass
            time.sleep(poll)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def store_key(keys: list[str], max_side: int) -> str:
    h = hashlib.sha256(f"images-v{FORMAT}|{max_side}".encode())
    for k in keys:
        h.update(k.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def build_store(files: list[Path], keys: list[str], decode: Callable[[Path], tuple[np.ndarray | None, str | None]],
                *, max_side: int, source: str, on_skip: Callable[[Path, str], None],
                cache_dir: Path | None = None) -> tuple[ImageStore, list[tuple[str, str]]]:
    """The store of ``files`` (decoded by ``decode``: (array, None) or (None, why skipped)), built or resumed
    when missing; returns it (only the readable files, in order) and the skipped files with why.

    ``on_skip`` is told of every skipped file, also of those a finished store remembers (it may raise to stop).
    """
    root = (cache_dir or default_cache_dir()) / "images"
    key = store_key(keys, max_side)
    final = root / key
    if not (final / "meta.json").is_file():
        with _lock(root / f".{key}.lock"):
            if not (final / "meta.json").is_file():
                _build(files, decode, root / f".{key}.partial", final, max_side=max_side, source=source, on_skip=on_skip)
                return _open(final, files, on_skip=None)
    return _open(final, files, on_skip=on_skip)


def _open(final: Path, files: list[Path], on_skip: Callable[[Path, str], None] | None) -> tuple[ImageStore, list[tuple[str, str]]]:
    meta_path = final / "meta.json"
    meta = json.loads(meta_path.read_text())
    os.utime(meta_path)  # last used: what `headstart cache --max-size` keeps
    skipped = [(str(files[i]), why) for i, why in meta["skipped"]]
    if on_skip is not None:
        for i, why in meta["skipped"]:
            on_skip(files[i], why)
    return ImageStore(final), skipped


def _build(files: list[Path], decode: Callable[[Path], tuple[np.ndarray | None, str | None]], part: Path, final: Path,
           *, max_side: int, source: str, on_skip: Callable[[Path, str], None]) -> None:
    part.mkdir(parents=True, exist_ok=True)
    index_path, pixels_path, skipped_path = part / "index.i64", part / "pixels.u8", part / "skipped.jsonl"
    done = index_path.stat().st_size // (8 * ROW) if index_path.is_file() else 0
    index = np.fromfile(index_path, dtype=np.int64).reshape(-1, ROW)[:done] if done else np.zeros((0, ROW), np.int64)
    ends = index[index[:, 0] >= 0]
    end = int((ends[:, 0] + ends[:, 1] * ends[:, 2] * 3).max()) if len(ends) else 0
    skipped = [json.loads(s) for s in skipped_path.read_text().splitlines()] if skipped_path.is_file() else []
    skipped = [s for s in skipped if s[0] < done]  # a chunk cut off mid-way is decoded again
    with open(index_path, "r+b" if done else "wb") as ix, open(pixels_path, "r+b" if end else "wb") as px, \
            open(skipped_path, "w") as sk:
        ix.truncate(done * 8 * ROW)
        ix.seek(0, os.SEEK_END)
        px.truncate(end)
        px.seek(end)
        for s in skipped:
            sk.write(json.dumps(s) + "\n")
        with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) as pool:
            bar = track(range(done, len(files)), len(files) - done, "decoding images", min_total=200)
            for start in range(done, len(files), CHUNK):
                chunk = files[start:start + CHUNK]
                rows = np.zeros((len(chunk), ROW), dtype=np.int64)
                for j, (p, (arr, why)) in enumerate(zip(chunk, pool.map(decode, chunk))):
                    next(bar, None)
                    if arr is None:
                        on_skip(p, why or "unreadable")
                        rows[j] = (-1, 0, 0)
                        sk.write(json.dumps([start + j, why]) + "\n")
                        continue
                    rows[j] = (end, arr.shape[0], arr.shape[1])
                    px.write(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
                    end += arr.nbytes
                px.flush()
                sk.flush()
                ix.write(rows.tobytes())  # the index last: a row written means its pixels are there
                ix.flush()
            for _ in bar:
                pass
    index = np.fromfile(index_path, dtype=np.int64).reshape(-1, ROW)
    np.save(part / "index.npy", index)
    index_path.unlink()
    skipped = [json.loads(s) for s in skipped_path.read_text().splitlines()]
    skipped_path.unlink()
    atomic_write_text(part / "meta.json", json.dumps({
        "format": FORMAT, "source": source, "n": len(files), "kept": int((index[:, 0] >= 0).sum()),
        "bytes": end, "max_side": max_side, "skipped": skipped, "created": time.time()}))
    if final.exists():  # left by a build that died after its rename began: ours is complete
        shutil.rmtree(final)
    os.replace(part, final)


def store_entries(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every image store of the cache (finished or interrupted), in the shape of `features.cache_entries`."""
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "images"
    entries = []
    for folder in root.glob("*") if root.is_dir() else []:
        if not folder.is_dir():
            continue
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        meta: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((folder / "meta.json").read_text())
        used = (folder / "meta.json") if meta else folder
        resized = sorted(p.name[len("resized-"):-3] for p in folder.glob("resized-*.u8"))
        entries.append({
            "key": folder.name.strip(".").removesuffix(".partial"), "path": str(folder), "bytes": size,
            "model": "", "source": meta.get("source", ""),
            "tag": ("decoded images" + (f", resized {', '.join(resized)}" if resized else "")) if meta
            else "decoded images, interrupted (resumed by the next run on them)",
            "shape": [meta.get("kept"), f"<={meta.get('max_side')}px" if meta else None],
            "created": meta.get("created", folder.stat().st_mtime), "last_used": used.stat().st_mtime,
        })
    return entries
