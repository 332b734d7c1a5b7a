"""Atomic file writes (a killed process never leaves a half-written file behind), and where caches live."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def default_cache_dir() -> Path:
    """The cache folder of features and decoded images: ``$HEADSTART_CACHE_DIR``, else ``runs/.cache``."""
    return Path(os.environ.get("HEADSTART_CACHE_DIR", "runs/.cache"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def prepare_output_dir(path: str | Path, *, overwrite: bool, markers: tuple[str, ...], what: str,
                       resume: bool | None = None, options: str = "--out") -> Path:
    """Create an output folder without ever destroying what the user had.

    An existing non-empty folder is kept for ``resume``, replaced only with
    ``overwrite`` *and* only when it holds one of ``markers`` (so it is one of
    ours), refused otherwise with a message naming the way out. ``resume`` is None for
    outputs that cannot be resumed (the message then does not offer --resume).
    """
    import shutil

    from .errors import HeadstartError

    p = Path(path)
    if p.exists() and any(p.iterdir()):
        if resume:
            return p
        if not overwrite:
            again = " (or --resume to continue it)" if resume is not None else ""
            raise HeadstartError(f"{p} already exists; choose another {options}, or pass --overwrite to replace it{again}")
        if not any((p / m).is_file() for m in markers):
            raise HeadstartError(f"{p} exists and is not {what}; refusing to delete it even with --overwrite")
        shutil.rmtree(p)
    p.mkdir(parents=True, exist_ok=True)
    return p
