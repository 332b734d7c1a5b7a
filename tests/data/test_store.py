"""The image store: folders decoded once to disk, read back exactly, reused, resumed, listed and cleared."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.backbones import build_backbone
from headstart.data import ImageStore, decode_image, load_data, store_entries
from headstart.data import _images
from headstart.errors import DataError
from tests.conftest import write_image_folder


def _decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Spy on the decoder: the files it is asked to decode, in order (it still decodes them)."""
    calls: list[Path] = []
    real = _images.decode_image

    def spy(path, *a, **kw):
        calls.append(Path(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(_images, "decode_image", spy)
    return calls


def test_folder_reads_back_the_decoded_pixels_and_is_decoded_once(image_folder: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _decodes(monkeypatch)
    ds = load_data(image_folder)
    assert isinstance(ds.items, ImageStore) and len(calls) == 24
    for i in (0, 7, 23):
        assert np.array_equal(ds.items[i], decode_image(ds.refs[i]))
    again = load_data(image_folder, seed=3)  # another split of the same files: read, not decoded
    assert len(calls) == 24
    assert [again.refs[i] for i in range(24)] == ds.refs
    assert all(np.array_equal(again.items[i], ds.items[i]) for i in range(24))
    (entry,) = store_entries(tmp_path / "cache")
    assert entry["shape"][0] == 24 and entry["bytes"] > 24 * 40 * 40 * 3 and entry["source"] == str(image_folder)
    os.utime(image_folder / "left" / "left_0.png", ns=(0, 0))  # a changed file: a new store
    load_data(image_folder)
    assert len(calls) == 48 and len(store_entries(tmp_path / "cache")) == 2


def test_a_reused_store_still_names_the_skipped_file_and_honours_strict(image_folder: Path) -> None:
    bad = image_folder / "right" / "broken.jpg"
    bad.write_bytes(b"not an image")
    first = load_data(image_folder)
    reused = load_data(image_folder)
    assert first.skipped == reused.skipped == [(str(bad), reused.skipped[0][1])]
    assert "cannot decode image" in reused.skipped[0][1] and len(reused.items) == 24
    assert str(bad) not in reused.refs
    with pytest.raises(DataError, match=r"broken\.jpg: cannot decode image"):
        load_data(image_folder, strict=True)


def test_an_interrupted_build_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from headstart.data import _store

    root = write_image_folder(tmp_path / "many", per_class=40)
    monkeypatch.setattr(_store, "CHUNK", 16)
    real, count = _images.decode_image, [0]

    def dies(path, *a, **kw):  # the 41st file: in the third chunk of 16
        count[0] += 1
        if count[0] == 41:
            raise KeyboardInterrupt
        return real(path, *a, **kw)

    monkeypatch.setattr(_images, "decode_image", dies)
    with pytest.raises(KeyboardInterrupt):
        load_data(root)
    (partial,) = store_entries(tmp_path / "cache")
    assert "interrupted" in partial["tag"]
    monkeypatch.setattr(_images, "decode_image", real)
    resumed_calls = _decodes(monkeypatch)
    ds = load_data(root)
    assert len(resumed_calls) == 80 - 32  # two chunks of 16 were complete; the third is decoded again
    assert all(np.array_equal(ds.items[i], decode_image(ds.refs[i])) for i in range(80))
    assert len(store_entries(tmp_path / "cache")) == 1


def test_views_pickle_and_resized_once_matches_the_in_memory_path(image_folder: Path) -> None:
    ds = load_data(image_folder, test_fraction=0.25)
    view = ds.take(ds.train_idx)
    assert isinstance(view, ImageStore) and len(view) == len(ds.train_idx)
    copy = pickle.loads(pickle.dumps(view))  # what a DataLoader worker gets
    assert all(np.array_equal(copy[i], ds.items[ds.train_idx[i]]) for i in range(len(view)))
    batcher = build_backbone("scratch:cnn@32").preprocess(train=True, augment="none")
    on_disk = batcher.resized_once(view)
    in_memory = batcher.resized_once([ds.items[i] for i in ds.train_idx])
    assert isinstance(on_disk[0], torch.Tensor) and on_disk[0].shape == (3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(on_disk, in_memory))
    assert torch.equal(batcher(list(on_disk[:4])), batcher(in_memory[:4]))
    (entry,) = store_entries()
    assert "resized 32x32" in entry["tag"]


def test_cache_command_lists_and_clears_image_stores(image_folder: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from headstart.cli import app

    load_data(image_folder)
    listed = CliRunner().invoke(app, ["cache"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "decoded images" in listed.output
    cleared = CliRunner().invoke(app, ["cache", "--clear"])
    assert cleared.exit_code == 0 and "removed 1 entries" in cleared.output
    assert store_entries(tmp_path / "cache") == [] and not any((tmp_path / "cache" / "images").iterdir())


def test_predicting_many_images_reads_them_through_a_store(image_folder: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import headstart

    run = headstart.fit(image_folder, model="scratch:cnn@32", strategy="linear", out=str(tmp_path / "run"))
    few, _ = run.resolve_inputs(image_folder)
    assert isinstance(few, list)  # under STORE_FROM: decoded into memory
    monkeypatch.setattr(_images, "STORE_FROM", 10)
    many, refs = run.resolve_inputs(image_folder)
    assert isinstance(many, ImageStore) and refs == [str(p) for p in sorted(image_folder.rglob("*.png"))]
    assert np.array_equal(run.outputs(many), run.outputs(few))
