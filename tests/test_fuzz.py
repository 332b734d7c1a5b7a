"""Fuzzing (Hypothesis): random bytes, shapes and strings through the data readers and the predict path.

Each must either work or raise the toolkit's own `HeadstartError` — never another
exception type, never a crash.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import headstart
from headstart.data import load_data, load_image_paths, read_texts
from headstart.errors import HeadstartError

from .conftest import write_image_folder, write_text_table

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> headstart.Run:
    root = tmp_path_factory.mktemp("textrun")
    data = write_text_table(root / "t.csv", per_class=12)
    return headstart.fit(data, model="scratch:bow", strategy="linear", cv_folds=2, out=str(root / "run"))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> headstart.Run:
    root = tmp_path_factory.mktemp("imagerun")
    data = write_image_folder(root / "imgs", per_class=8)
    tiny = f"py:{Path(__file__).parent / 'backbones' / 'tiny_factory.py'}:tiny"
    return headstart.fit(data, model=tiny, strategy="linear", cv_folds=2, out=str(root / "run"))


def _image_bytes(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


# random files: pure noise, or a real image cut short / with flipped bytes
image_files = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda h, w, fmt, cut: _image_bytes(np.full((h, w, 3), 120, np.uint8), fmt)[:cut],
              st.integers(1, 64), st.integers(1, 64), st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]), st.integers(0, 4000)),
)


@FUZZ
@given(blobs=st.lists(image_files, min_size=1, max_size=4), ext=st.sampled_from([".jpg", ".png", ".bmp", ".gif", ".webp"]))
def test_image_folder_reader_survives_random_files(blobs: list[bytes], ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_image_folder(Path(tmp) / "imgs", per_class=6)
        for i, b in enumerate(blobs):
            (root / "left" / f"fuzz{i}{ext}").write_bytes(b)
        try:
            ds = load_data(root)
        except HeadstartError:
            return
        assert len(ds.items) + len(ds.skipped) == 12 + len(blobs)
        assert all(x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3 for x in ds.items)


table_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=400)


@FUZZ
@given(text=table_text, ext=st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"]))
def test_table_reader_survives_random_text(text: str, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"t{ext}"
        p.write_text(text, encoding="utf-8")
        try:
            ds = load_data(p)
        except HeadstartError:
            return
        assert ds.num_classes >= 2 and all(isinstance(t, str) and t for t in ds.items)


@FUZZ
@given(raw=st.binary(max_size=600), ext=st.sampled_from([".csv", ".tsv", ".parquet", ".jsonl", ".txt"]))
def test_table_reader_survives_random_bytes(raw: bytes, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"t{ext}"
        p.write_bytes(raw)
        for reader in (load_data, read_texts):
            try:
                reader(p)
            except HeadstartError:
                pass


@FUZZ
@given(texts=st.lists(table_text, min_size=1, max_size=6))
def test_text_predict_survives_random_strings(text_run: headstart.Run, texts: list[str]) -> None:
    try:
        rows = text_run.predict(texts)
    except HeadstartError:
        return
    assert len(rows) == len(texts)
    for r in rows:
        assert r["label"] in text_run.classes
        assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-4


@FUZZ
@given(blob=image_files, shape=st.tuples(st.integers(1, 300), st.integers(1, 300)), mode=st.sampled_from(["RGB", "L", "RGBA", "P", "CMYK"]))
def test_image_predict_survives_random_files_and_shapes(image_run: headstart.Run, blob: bytes, shape: tuple[int, int],
                                                        mode: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "good.png"
        arr = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(mode)
        img.save(good if mode != "CMYK" else good.with_suffix(".jpg"))
        fuzz = Path(tmp) / "fuzz.jpg"
        fuzz.write_bytes(blob)
        inputs = [str(p) for p in Path(tmp).iterdir()]
        try:
            rows = image_run.predict(inputs)
        except HeadstartError:
            return
        assert {r["input"] for r in rows} <= set(inputs) and rows
        for r in rows:
            assert r["label"] in image_run.classes


@FUZZ
@given(blobs=st.lists(image_files, min_size=1, max_size=3))
def test_image_path_list_reader_survives(blobs: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, b in enumerate(blobs):
            p = Path(tmp) / f"x{i}.png"
            p.write_bytes(b)
            paths.append(p)
        try:
            items, refs, skipped = load_image_paths(paths)
        except HeadstartError:
            return
        assert len(items) + len(skipped) == len(paths)
