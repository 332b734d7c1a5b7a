from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from headstart.data import load_data, read_table
from headstart.errors import DataError


def test_tsv_with_header_label_first_crlf(tmp_path: Path) -> None:
    # SST-2's layout: label first, header, CRLF line ends.
    p = tmp_path / "sst.tsv"
    rows = ["label\tsentence"] + [f"{i % 2}\tsentence number {i} , with a comma" for i in range(10)]
    p.write_bytes("\r\n".join(rows).encode() + b"\r\n")
    t = read_table(p)
    texts, labels, refs = t.texts, t.labels, t.refs
    assert len(texts) == 10
    assert texts[0] == "sentence number 0 , with a comma"
    assert labels[:2] == ["0", "1"]
    assert refs[0].endswith("sst.tsv:2")  # line 1 is the header


def test_headerless_tsv_label_first_is_detected(tmp_path: Path) -> None:
    # SMS spam's layout: no header, label<TAB>text.
    p = tmp_path / "sms.txt"
    p.write_text("ham\thello there how are you\nspam\tWIN a prize now call\nham\tsee you at eight\nham\tok\n")
    t = read_table(p)
    texts, labels, refs = t.texts, t.labels, t.refs
    assert labels == ["ham", "spam", "ham", "ham"]
    assert texts[1] == "WIN a prize now call"
    assert refs[0].endswith("sms.txt:1")


def test_csv_columns_detected_and_overridable(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("id,body,topic\n1,a long text about cats,pets\n2,another long text on dogs,pets\n3,stocks went up,money\n")
    t = read_table(p)
    assert t.labels == ["pets", "pets", "money"] and t.texts[2] == "stocks went up"
    assert t.decided["text"] == {"value": "body", "how": "detected: its name", "flag": "--text-col"}
    t = read_table(p, text_col="topic", label_col="id")
    assert t.labels == ["1", "2", "3"] and t.decided["label"]["how"] == "given"


def test_unknown_column_names_columns(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("text,label\nhi,a\nho,b\n")
    with pytest.raises(DataError, match=r"--label-col 'lbl' is not a column; did you mean 'label'\? columns are: text, label"):
        read_table(p, label_col="lbl")


def test_missing_label_is_skipped_and_strict_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("text,label\nfine,a\nno label here,\nok,b\n")
    t = read_table(p)
    assert t.texts == ["fine", "ok"] and t.refs[1].endswith("t.csv:4")
    assert t.skipped == [(f"{p}:3", "missing label in column 'label'")]
    with pytest.raises(DataError, match=r"t\.csv:3: missing label .*without --strict they are skipped"):
        read_table(p, strict=True)


def test_empty_text_is_skipped_and_strict_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text('text,label\nfine,a\n"   ",b\nok,b\n')
    assert read_table(p).skipped == [(f"{p}:3", "empty text in column 'text'")]
    with pytest.raises(DataError, match=r"t\.csv:3: empty text"):
        read_table(p, strict=True)


def test_jsonl_and_parquet(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": ["good film", "bad film", "great", "awful"], "label": [1, 0, 1, 0]})
    df.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    df.to_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        t = read_table(tmp_path / name)
        assert t.texts == df.text.tolist() and t.labels == ["1", "0", "1", "0"]


def test_single_class_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("text,label\na b,x\nc d,x\ne f,x\n")
    with pytest.raises(DataError, match="only one class"):
        load_data(p)


def test_label_only_in_test_file(tmp_path: Path, text_csv: Path) -> None:
    extra = tmp_path / "test.csv"
    extra.write_text("text,label\nthe goal match,sport\nweird,unicorn\n")
    with pytest.raises(DataError, match=r"test\.csv:3: label 'unicorn' appears in the test data but never in training"):
        load_data(text_csv, test=extra)


def test_splits_are_disjoint_stratified_and_seeded(text_csv: Path) -> None:
    a = load_data(text_csv, seed=1, test_fraction=0.25, val_fraction=0.2)
    b = load_data(text_csv, seed=1, test_fraction=0.25, val_fraction=0.2)
    c = load_data(text_csv, seed=2, test_fraction=0.25, val_fraction=0.2)
    sets = [set(a.train_idx), set(a.val_idx), set(a.test_idx)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(map(len, sets)) == len(a.items) == 40
    assert np.bincount(a.y[a.test_idx]).tolist() == [5, 5]  # 25% of each class
    assert np.array_equal(a.test_idx, b.test_idx) and not np.array_equal(a.test_idx, c.test_idx)


def test_budget_options_only_shrink_training(text_csv: Path) -> None:
    full = load_data(text_csv, seed=0)
    few = load_data(text_csv, seed=0, labels_per_class=3)
    assert np.bincount(few.y[few.train_idx]).tolist() == [3, 3]
    # the same reported examples whatever the budget; too few labels for a selection split
    assert [full.refs[i] for i in full.test_idx] == [few.refs[i] for i in few.test_idx]
    assert len(few.val_idx) == 0
    assert len(few.items) == 6 + len(few.test_idx)  # unused examples are dropped
    sized = load_data(text_csv, seed=0, train_size=12, val_fraction=0.2)
    # the selection split comes out of the budget: 12 labeled examples in all
    assert len(sized.train_idx) + len(sized.val_idx) == 12 and np.bincount(sized.y[sized.val_idx]).tolist() == [1, 1]


def test_explicit_test_file_is_the_reported_split(tmp_path: Path, text_csv: Path) -> None:
    from tests.conftest import write_text_table

    extra = write_text_table(tmp_path / "held.csv", per_class=4, seed=9)
    ds = load_data(text_csv, test=extra)
    assert len(ds.test_idx) == 8 and all(ds.refs[i].startswith(str(extra)) for i in ds.test_idx)
    assert len(ds.train_idx) + len(ds.val_idx) == 40
