"""Image folders: layouts, safe decoding, the bad-file policy.

Layouts understood (first match wins):

* ``root/train/<class>/`` with ``root/val|validation|valid/<class>/`` and/or
  ``root/test/<class>/``;
* ``root/<class>/`` – one pool, split stratified by seed.

Images are decoded once, downscaled so that their shorter side is at most
``max_side`` pixels (JPEG draft mode makes this cheap), into an image store on
disk (`data._store`): training epochs, feature extraction and later runs on the
same files then never touch the JPEG decoder again, and memory holds a batch,
not the data set. A file that cannot be decoded is skipped with a warning
naming it (``strict`` turns that into an error).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .._progress import track, warn
from ..errors import DataError
from ._store import ImageStore, build_store

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "validation", "valid", "dev"), "test": ("test", "testing")}
MAX_SIDE = 320


def is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


class TooManyPixels(ValueError):
    """An image whose header declares more pixels than the caller allows (checked before decoding)."""


def decode_image(path: str | Path | IO[bytes], max_side: int = MAX_SIDE, max_pixels: int | None = None) -> np.ndarray:
    """Decode any PIL-readable image (a file, or an open binary stream) to an RGB uint8 array [H, W, 3].

    Handles EXIF rotation, grayscale, palette, RGBA (composited on white),
    CMYK and 16-bit images. Raises ``OSError``/``ValueError`` for files that
    are not (complete) images, PIL's DecompressionBombError above its
    pixel limit, and `TooManyPixels` above ``max_pixels`` (read from the
    header, so nothing that large is ever decoded).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise TooManyPixels(f"{im.width}x{im.height} = {im.width * im.height:,} pixels, "
                                    f"more than the limit of {max_pixels:,}")
            if im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                hi = arr.max() or 1.0
                im = Image.fromarray((arr * (255.0 / hi)).astype(np.uint8)).convert("RGB")
            elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, rgba).convert("RGB")
            else:
                im = im.convert("RGB")
            w, h = im.size
            short = min(w, h)
            if short > max_side:
                scale = max_side / short
                im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()


def _file_key(p: Path) -> str:
    st = p.stat()
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _find_split_dirs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    children = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    for split, names in SPLIT_NAMES.items():
        for n in names:
            if n in children:
                found[split] = children[n]
                break
    return found if "train" in found else {}


def list_image_folder(root: Path) -> dict[str, list[tuple[Path, str]]]:
    """{split: [(file, class_name), ...]} with split in train/val/test, or 'pool' for a flat layout."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    splits = _find_split_dirs(root)
    parts = splits if splits else {"pool": root}
    out: dict[str, list[tuple[Path, str]]] = {}
    for split, folder in parts.items():
        classes = _class_dirs(folder)
        if not classes:
            loose = [p for p in folder.iterdir() if is_image_file(p)]
            hint = " (images must sit in one sub-folder per class)" if loose else ""
            raise DataError(f"{folder}: no class sub-folders found{hint}; expected {folder}/<class>/<image files>")
        files: list[tuple[Path, str]] = []
        for c in classes:
            imgs = sorted(p for p in c.rglob("*") if is_image_file(p))
            if not imgs:
                raise DataError(
                    f"{c}: class folder has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                    "add images or remove the folder"
                )
            files.extend((p, c.name) for p in imgs)
        out[split] = files
    return out


def _decoded(p: Path, max_side: int = MAX_SIDE) -> tuple[np.ndarray | None, str | None]:
    """(array, None), or (None, why it cannot be used)."""
    try:
        return decode_image(p, max_side), None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return None, f"image too large ({e}); raise PIL.Image.MAX_IMAGE_PIXELS if you trust it"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return None, f"cannot decode image ({e.__class__.__name__}: {e})"


def _skip(strict: bool) -> Callable[[Path, str], None]:
    """The bad-file policy: an error under ``strict``, else a warning naming the file."""
    def on_skip(p: Path, why: str) -> None:
        if strict:
            raise DataError(f"{p}: {why} (remove the file, or drop --strict to skip unreadable files)")
        warn(f"skipping {p}: {why}")

    return on_skip


def decode_all(files: list[Path], strict: bool, max_side: int = MAX_SIDE) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
    """Decode files in parallel into memory; returns arrays (None where skipped) and the skip list."""
    workers = min(8, (os.cpu_count() or 1) * 2)
    arrays: list[np.ndarray | None] = []
    skipped: list[tuple[str, str]] = []
    on_skip = _skip(strict)
    with ThreadPoolExecutor(workers) as pool:
        decoded = pool.map(lambda p: _decoded(p, max_side), files)
        for p, (arr, why) in zip(files, track(decoded, len(files), "decoding images", min_total=200)):
            if why is not None:
                on_skip(p, why)
                skipped.append((str(p), why))
            arrays.append(arr)
    return arrays, skipped


def read_images(files: list[Path], strict: bool, source: str, keys: list[str] | None = None,
                max_side: int = MAX_SIDE) -> tuple[ImageStore, list[tuple[str, str]]]:
    """Decode files once into an image store (`data._store`), or open the one an earlier run made of the same files:
    (the readable images in order, skipped files with why). ``keys``: the files' `_file_key`, when already known."""
    keys = keys if keys is not None else [_file_key(p) for p in files]
    return build_store(files, keys, lambda p: _decoded(p, max_side), max_side=max_side, source=source,
                       on_skip=_skip(strict))


STORE_FROM = 1000  # images: `load_image_paths` keeps fewer in memory, reads more through an image store


def load_image_paths(paths: list[Path], strict: bool = False) -> tuple[Sequence[np.ndarray], list[str], list[tuple[str, str]]]:
    """Decode a list of images for prediction: (arrays, refs, skipped). From `STORE_FROM` images on, they are
    read through an image store, so that predicting a large folder holds one batch in memory, not the folder."""
    if len(paths) >= STORE_FROM:
        store, skipped = read_images(paths, strict, source=f"{len(paths)} files to predict")
        return store, [str(paths[int(r)]) for r in store.rows], skipped
    arrays, skipped = decode_all(paths, strict)
    kept = [(a, str(p)) for a, p in zip(arrays, paths) if a is not None]
    return [a for a, _ in kept], [r for _, r in kept], skipped


__all__ = ["STORE_FROM", "TooManyPixels", "decode_image", "list_image_folder", "decode_all", "load_image_paths", "read_images",
           "is_image_file", "_file_key"]
