"""Texts of a large table kept on disk while a command runs: what `read_table` streams a big file into.

A table larger than `STREAM_FROM` bytes is read a chunk at a time (`read_table`), and its texts are appended to a
*text store*: one file of UTF-8 bytes, every text after the other, and the offset where each starts. Reading a text
is one positioned read (``os.pread``) of its bytes, served from the page cache once the file is warm, so that
memory holds 8 bytes of offset per row instead of a string (about 170 bytes for a 120-character text). The rows'
references (``file:line``) are kept the same way, as an array of line numbers formatted on access (`LineRefs`).

The store lives in the cache folder (``texts/<pid>-<n>``) for as long as something reads it: it is removed when the
last view of it is collected, or at exit, and a folder left by a process that was killed is removed by the next
one that writes a store. Unlike an image store it is not kept between runs: reading a table again costs seconds,
decoding images minutes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import default_cache_dir
from ._store import _Concatenable, _FileBacked

STREAM_FROM = 32 * 2**20  # bytes of a table file: smaller tables are read whole into memory (the faster path)
BLOCK = 4096  # texts read at once when a store is read through
_count = itertools.count()


class TextStore(_FileBacked):
    """Texts read from a store's byte file, one positioned read each; ``rows`` selects and orders them (`take`
    narrows it without reading). Pickling keeps the folder and the rows: DataLoader workers reopen the file."""

    def __init__(self, folder: Path, rows: np.ndarray | None = None, offsets: np.ndarray | None = None,
                 owner: Any = None):
        self.folder = Path(folder)
        self.offsets = np.load(self.folder / "offsets.npy") if offsets is None else offsets
        self.rows = np.arange(len(self.offsets) - 1) if rows is None else np.asarray(rows, dtype=np.int64)
        self._fd: int | None = None
        self._owner = owner  # shared by every view: the folder goes when the last of them does

    def __getstate__(self) -> dict[str, Any]:  # a worker's copy neither owns nor removes the folder
        return super().__getstate__() | {"_owner": None}

    def __len__(self) -> int:
        return len(self.rows)

    def _path(self) -> Path:
        return self.folder / "texts.u8"

    def read(self, row: int) -> str:
        """The text at ``row`` of the store (not of this view)."""
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        data = os.pread(self._file(), end - start, start)
        if len(data) != end - start:
            raise OSError(f"{self.folder / 'texts.u8'}: truncated (row {row}); read the table again")
        return data.decode("utf-8", "surrogatepass")

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self.read(int(r)) for r in self.rows[i]]
        return self.read(int(self.rows[i]))

    def __iter__(self) -> Iterator[str]:
        """In blocks of 4,096 rows: one read of the bytes a block spans when they are close together (a whole
        store, or the sorted rows of a split), else one read per text."""
        for s in range(0, len(self.rows), BLOCK):
            rows = self.rows[s : s + BLOCK]
            starts, ends = self.offsets[rows], self.offsets[rows + 1]
            lo, hi = int(starts.min()), int(ends.max())
            if hi - lo > 2 * int((ends - starts).sum()) + 2**16:
                yield from (self.read(int(r)) for r in rows)
                continue
            data = os.pread(self._file(), hi - lo, lo)
            if len(data) != hi - lo:
                raise OSError(f"{self.folder / 'texts.u8'}: truncated; read the table again")
            yield from (data[a - lo : b - lo].decode("utf-8", "surrogatepass") for a, b in zip(starts.tolist(), ends.tolist()))

    def take(self, idx: Any) -> TextStore:
        """The texts at positions ``idx`` of this view, as a view: nothing is read."""
        return TextStore(self.folder, self.rows[np.asarray(idx, dtype=np.int64)], self.offsets, self._owner)


class TextWriter:
    """Appends texts to a new store in the cache folder; `finish` gives the `TextStore`."""

    def __init__(self, cache_dir: Path | None = None):
        root = (cache_dir or default_cache_dir()) / "texts"
        _remove_orphans(root)
        self.folder = root / f"{os.getpid()}-{next(_count)}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._owner = _Owner()
        weakref.finalize(self._owner, _remove, self.folder, os.getpid())  # at exit too, if still alive then
        self._fh = open(self.folder / "texts.u8", "wb")  # noqa: SIM115 - closed by finish
        self._ends: list[np.ndarray] = []
        self._size = 0

    def extend(self, texts: list[str]) -> None:
        data = [t.encode("utf-8", "surrogatepass") for t in texts]
        self._fh.write(b"".join(data))
        ends = self._size + np.cumsum([len(d) for d in data], dtype=np.int64)
        if len(ends):
            self._size = int(ends[-1])
            self._ends.append(ends)

    def finish(self) -> TextStore:
        self._fh.close()
        offsets = np.concatenate([np.zeros(1, np.int64), *self._ends])
        np.save(self.folder / "offsets.npy", offsets)
        return TextStore(self.folder, offsets=offsets, owner=self._owner)


class LineRefs(_Concatenable):
    """``file:line`` references formatted on access from an array of line numbers (``row N`` where there is none,
    as for Parquet rows): a list of a million such strings would take about 100 MB."""

    def __init__(self, path: str, lines: np.ndarray):
        self.path, self.lines = path, np.asarray(lines, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.lines)

    def _ref(self, i: int) -> str:
        return line_ref(self.path, int(self.lines[i]))

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._ref(j) for j in range(*i.indices(len(self)))]
        return self._ref(int(i) + (len(self) if int(i) < 0 else 0))

    def __iter__(self) -> Iterator[str]:
        return (self._ref(i) for i in range(len(self)))

    def take(self, idx: Any) -> LineRefs:
        return LineRefs(self.path, self.lines[np.asarray(idx, dtype=np.int64)])


def line_ref(path: str, n: int) -> str:
    """``file:line``, or ``file:row N`` for ``-N`` (a row without a line: JSON, Parquet)."""
    return f"{path}:{n}" if n > 0 else f"{path}:row {-n}"


class TextSink:
    """Where a reader puts the texts it keeps and their lines, a chunk at a time: a list, or a `TextWriter` for a
    large file (``to_disk``). `result` gives (texts, references): lists, or a `TextStore` and `LineRefs`."""

    def __init__(self, path: str, to_disk: bool):
        self.path, self.writer = path, TextWriter() if to_disk else None
        self.texts: list[Any] = []
        self.lines: list[np.ndarray] = []

    def extend(self, texts: list[Any], lines: Sequence[int]) -> None:
        (self.writer.extend if self.writer is not None else self.texts.extend)(texts)
        self.lines.append(np.asarray(lines, dtype=np.int64))

    def result(self) -> tuple[Sequence[Any], Sequence[str]]:
        refs = LineRefs(self.path, np.concatenate(self.lines) if self.lines else np.zeros(0, np.int64))
        return (self.writer.finish(), refs) if self.writer is not None else (self.texts, list(refs))


class _Owner:
    """What keeps a store's folder: removed when the last `TextStore` holding it is collected."""


def _remove(folder: Path, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child (a DataLoader worker) whose copies are collected
        shutil.rmtree(folder, ignore_errors=True)


def _remove_orphans(root: Path) -> None:
    """Stores whose process is gone (killed before its exit handler ran)."""
    for folder in root.glob("*-*") if root.is_dir() else []:
        pid = folder.name.split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass


__all__ = ["STREAM_FROM", "LineRefs", "TextSink", "TextStore", "TextWriter", "line_ref"]
