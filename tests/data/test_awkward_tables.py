"""Tables as people save them: spreadsheet CSVs, gaps, broken lines, unusual column names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.data import load_data, read_table
from headstart.data._tables import sniff_delimiter
from headstart.errors import DataError


def _rows(n: int = 6, sep: str = ",") -> str:
    """Texts with commas in them, unless commas separate the fields."""
    c = "" if sep == "," else ","
    return "".join(f"the match{c} goal number {i}{sep}sport\nbake the bread{c} loaf {i}{sep}food\n" for i in range(n))


@pytest.mark.parametrize(("sep", "name", "ext"), [(";", "semicolon", ".csv"), ("\t", "tab", ".csv"), ("|", "pipe", ".txt"),
                                                  (";", "semicolon", ".tsv")])
def test_delimiter_is_sniffed_even_with_commas_in_the_texts(tmp_path: Path, sep: str, name: str, ext: str) -> None:
    p = tmp_path / f"t{ext}"
    p.write_text(f"text{sep}label\n" + _rows(sep=sep), encoding="utf-8")
    t = read_table(p)
    assert t.texts[0] == "the match, goal number 0" and set(t.labels) == {"sport", "food"}
    assert t.decided["delimiter"] == {"value": name, "how": "detected", "flag": "--delimiter"}


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    p = tmp_path / "excel.csv"
    p.write_bytes(("\ufefflabel;text\n" + "".join(f"{lab};{txt}\n" for txt, lab in
                                                (line.split(";") for line in _rows(sep=";").splitlines()))).encode("utf-8"))
    assert sniff_delimiter(p) == ";"
    t = read_table(p)
    assert t.decided["label"] == {"value": "label", "how": "detected: its name", "flag": "--label-col"}
    assert t.labels[:2] == ["sport", "food"]
    j = tmp_path / "excel.jsonl"
    j.write_bytes(("\ufeff" + "".join(json.dumps({"text": f"goal {i}", "label": "ab"[i % 2]}) + "\n" for i in range(4))).encode())
    assert read_table(j).texts[0] == "goal 0"


def test_an_explicit_delimiter_wins_over_the_sniffed_one(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("".join(f"words {i};more words {i},x\n" for i in range(6)), encoding="utf-8")
    sniffed = read_table(p, text_col="0", label_col="1", header="no")  # one ';' and one ',' per line: a tie, comma first
    assert sniffed.texts[0] == "words 0;more words 0" and sniffed.decided["delimiter"]["how"] == "detected"
    t = read_table(p, text_col="0", label_col="1", header="no", delimiter=";")
    assert t.texts[0] == "words 0" and t.labels[0] == "more words 0,x"
    assert t.decided["delimiter"] == {"value": "semicolon", "how": "given", "flag": "--delimiter"}
    assert t.decided["header"] == {"value": "no", "how": "given", "flag": "--header"}


def test_a_bad_jsonl_line_is_named_by_its_line_number(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    good = [json.dumps({"text": f"goal {i}", "label": "sport"}) for i in range(3)]
    p.write_text("\n".join([good[0], "", good[1], '{"text": "oven, "label": "food"}', good[2]]) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:4: not valid JSON \(Expecting ',' delimiter, column 18\)"):
        read_table(p)
    p.write_text("\n".join([good[0], '["a list"]']) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:2: a JSON list, not an object"):
        read_table(p)


def test_jsonl_rows_keep_their_line_numbers_across_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "goal", "label": "sport"}\n\n{"text": "", "label": "food"}\n{"text": "oven", "label": "food"}\n')
    t = read_table(p)
    assert t.refs == [f"{p}:1", f"{p}:4"] and t.skipped == [(f"{p}:3", "empty text in column 'text'")]


def test_bad_rows_are_skipped_with_one_warning_naming_ten(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    p = tmp_path / "t.csv"
    lines = ["text,label"] + [f"sentence {i},{'' if i % 10 == 0 else 'ab'[i % 2]}" for i in range(200)]
    p.write_text("\n".join(lines) + "\n")
    ds = load_data(p)
    assert len(ds.items) == 180 and len(ds.skipped) == 20 and ds.summary()["skipped"] == 20
    err = " ".join(capsys.readouterr().err.split())
    assert "skipped 20 row(s)" in err and f"{p}:2 (missing label in column 'label')" in err
    assert f"{p}:92 " in err and f"{p}:102 " not in err and "and 10 more" in err


def test_no_usable_row_or_an_emptied_class_is_still_an_error(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("text,label\n" + "words,\n" * 5)
    with pytest.raises(DataError, match=r"t\.csv: no usable row: all 5 rows"):
        read_table(p)
    p.write_text("text,label\n" + _rows() + ",music\n  ,music\n")
    with pytest.raises(DataError, match=r"t\.csv: class 'music' has no usable row left: its rows have an empty text "
                                        r"\(e\.g\. .*t\.csv:14, .*t\.csv:15\)"):
        read_table(p)


def test_a_label_guessed_from_content_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    p = tmp_path / "posts.csv"
    p.write_text("body,author\n" + "".join(f"a long post number {i} about things,{'ab'[i % 2]}\n" for i in range(12)))
    ds = load_data(p)
    assert ds.decided["text"] == {"value": "body", "how": "detected: its name", "flag": "--text-col"}
    assert ds.decided["label"] == {"value": "author", "how": "detected: fewest distinct values", "flag": "--label-col"}
    assert ds.decided["task"]["value"] == "binary" and ds.summary()["decided"] == ds.decided
    err = " ".join(capsys.readouterr().err.split())
    assert "using 'author', the column with the fewest distinct values, as the label" in err and "--label-col" in err
