"""Copies across the splits: found by content and by perceptual hash / normalised text, named, and dropped by
``--dedupe``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import headstart
from headstart.data import load_data

from .conftest import write_image_folder


def folder_with_copies(root: Path) -> tuple[Path, dict[str, str]]:
    """train/ and val/ (the reported part) of two classes; two val images are copies of training ones: one the
    same file, one resized and saved again as JPEG."""
    write_image_folder(root, per_class=10, classes=2, seed=4, layout="trainval")
    exact = root / "val" / "left" / "copy_of_left_3.png"
    shutil.copy(root / "train" / "left" / "left_3.png", exact)
    near = root / "val" / "right" / "smaller_right_7.jpg"
    Image.open(root / "train" / "right" / "right_7.png").resize((36, 36)).save(near, quality=90)
    return root, {str(exact): str(root / "train" / "left" / "left_3.png"), str(near): str(root / "train" / "right" / "right_7.png")}


def test_image_copies_across_the_splits_are_found_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    root, pairs = folder_with_copies(tmp_path / "imgs")
    ds = load_data(root)
    leak = ds.leakage
    assert (leak["exact"], leak["near"]) == (1, 1) and leak["training_copies"] == 2 and not leak["dropped"]
    found = {g["held_out"]: (g["training"], g["match"]) for g in leak["groups"]}
    exact, near = list(pairs)
    assert found[exact] == ([pairs[exact]], "exact") and found[near] == ([pairs[near]], "near")
    err = capsys.readouterr().err
    assert "2 example(s) of the reported split have copies on the training side (1 exact, 1 near)" in err
    assert "--dedupe drops the training copies" in err
    kept = load_data(root, dedupe=True)
    gone = {kept.refs[i] for i in np.setdiff1d(ds.train_idx, kept.train_idx)} | \
           {kept.refs[i] for i in np.setdiff1d(ds.val_idx, kept.val_idx)}
    assert gone == set(pairs.values()) and kept.leakage["dropped"]
    assert np.array_equal(kept.test_idx, ds.test_idx)  # the reported split is never touched


def test_no_false_match_among_distinct_images(tmp_path: Path) -> None:
    ds = load_data(write_image_folder(tmp_path / "imgs", per_class=15, classes=3, seed=2))
    assert (ds.leakage["exact"], ds.leakage["near"]) == (0, 0)


def test_text_copies_differing_in_case_and_punctuation_are_near(tmp_path: Path) -> None:
    train = ["the match ended with a late goal", "a slow oven bakes the bread", "coach picks the team",
             "Spice up the sauce!", "league table after the match", "flour and water make dough"] * 1
    rows = ["text,label"] + [f"{t},{'sport' if i % 2 == 0 else 'food'}" for i, t in enumerate(train * 3)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("text,label\nthe match ended with a late goal,sport\n"
                                       "SPICE up   the sauce,food\na brand new sentence about a team,sport\n")
    ds = load_data(tmp_path / "train.csv", test=tmp_path / "test.csv")
    assert (ds.leakage["exact"], ds.leakage["near"]) == (1, 1)
    assert {g["match"] for g in ds.leakage["groups"]} == {"exact", "near"}
    assert all(g["copies"] == 3 for g in ds.leakage["groups"])  # each training text appears three times


def test_no_false_match_among_distinct_texts_of_one_length_and_start(tmp_path: Path) -> None:
    # 16 characters each, the first 8 shared: a fingerprint that kept raw bytes instead of a digest would match them
    rows = ["text,label"] + [f"samewordx{i:07d},{'a' if i % 2 else 'b'}" for i in range(60)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    ds = load_data(tmp_path / "t.csv")
    assert len(ds.items[0]) == 16 and (ds.leakage["exact"], ds.leakage["near"]) == (0, 0)


def test_fit_report_and_summary_show_the_copies(tmp_path: Path) -> None:
    root, _ = folder_with_copies(tmp_path / "imgs")
    run = headstart.fit(root, model="scratch:cnn@32", strategy="linear", out=str(tmp_path / "run"))
    assert run.metrics["data"]["leakage"]["near"] == 1
    page = (run.path / "report.html").read_text()
    assert "Copies across the splits: 1 exact, 1 near" in page and "copy_of_left_3.png" in page
    run = headstart.fit(root, model="scratch:cnn@32", strategy="linear", dedupe=True, out=str(tmp_path / "run2"))
    assert run.metrics["data"]["n_train"] + run.metrics["data"]["n_val"] == 20 - 2
    assert run.reload_data().leakage["dropped"]  # the run's own data, read again, is deduplicated the same way
