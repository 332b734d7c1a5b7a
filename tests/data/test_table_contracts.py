"""The table reader's contracts, one by one: what it decides, the lines it names, and each message word for word."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.data._tables import (
    SNIFF_BYTES,
    read_image_list,
    read_table,
    read_texts,
    sniff_delimiter,
)
from headstart.errors import DataError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_sniffing_picks_the_consistent_separator_and_falls_back_by_extension(tmp_path: Path) -> None:
    semi = "text;label\n" + "".join(f"a, b, c and d {i};x{i % 2}\n" for i in range(6))  # commas inside the texts
    assert sniff_delimiter(_write(tmp_path / "s.csv", semi)) == ";"
    assert sniff_delimiter(_write(tmp_path / "p.txt", "a|b\nc|d\ne|f\n")) == "|"
    assert sniff_delimiter(_write(tmp_path / "one.csv", "single\nvalues\nonly\n")) == ","  # undecided: the extension's
    assert sniff_delimiter(_write(tmp_path / "one.tsv", "single\nvalues\nonly\n")) == "\t"
    assert sniff_delimiter(_write(tmp_path / "one.TXT", "single\nvalues\nonly\n")) == "\t"
    # a file longer than the sample is judged on the sample
    row = "word word word;lbl\n"
    big = "text;label\n" + row * (SNIFF_BYTES // len(row) + 50)
    assert sniff_delimiter(_write(tmp_path / "big.csv", big)) == ";"
    assert sniff_delimiter(_write(tmp_path / "bom.csv", "\ufefftext\tlabel\nx y\t1\nz w\t0\n")) == "\t"


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": }\n')
    with pytest.raises(DataError, match=r"d\.jsonl:3: not valid JSON \(Expecting value, column 24\); each line must be one "
                                        r"JSON object, e\.g\. \{\"text\": \"\.\.\.\", \"label\": \"\.\.\.\"\}$"):
        read_table(p)
    p = _write(tmp_path / "e.jsonl", '{"text": "a", "label": "x"}\n["b", "y"]\n')
    with pytest.raises(DataError, match=r"e\.jsonl:2: a JSON list, not an object; each line must be one JSON object "
                                        r"with the text and label fields$"):
        read_table(p)
    ok = _write(tmp_path / "ok.jsonl", '{"text": "a b", "label": "x"}\n\n{"text": "", "label": "y"}\n{"text": "c", "label": "y"}\n')
    t = read_table(ok)
    assert t.refs == [f"{ok}:1", f"{ok}:4"] and t.skipped == [(f"{ok}:3", "empty text in column 'text'")]


def test_unreadable_delimited_file_says_how_to_fix_it(tmp_path: Path) -> None:
    p = _write(tmp_path / "q.csv", 'text,label\n"an open quote,x\nb,y\n')
    with pytest.raises(DataError, match=r"q\.csv: cannot read as a \.csv table \(.+\); check the quoting, or give the separator "
                                        r"with --delimiter$"):
        read_table(p)


def test_header_detection_and_what_was_decided(tmp_path: Path) -> None:
    named = _write(tmp_path / "named.csv", "review,sentiment\ngood film,pos\nbad film,neg\nfine,pos\n")
    t = read_table(named)
    assert t.decided == {"text": {"value": "review", "how": "detected: its name", "flag": "--text-col"},
                         "label": {"value": "sentiment", "how": "detected: its name", "flag": "--label-col"},
                         "delimiter": {"value": "comma", "how": "detected", "flag": "--delimiter"},
                         "header": {"value": "yes", "how": "detected", "flag": "--header"}}
    assert t.refs[0] == f"{named}:2"
    # no known names, but a first row whose "label" appears once while the rest repeat: a header
    rows = "".join(f"sentence number {i} here\t{'ab'[i % 2]}\n" for i in range(8))
    unnamed = _write(tmp_path / "u.tsv", "words\tkind\n" + rows)
    t = read_table(unnamed)
    assert t.decided["header"] == {"value": "yes", "how": "detected", "flag": "--header"}
    assert t.decided["text"]["how"] == "detected: longest texts" and t.decided["label"]["how"] == "detected: fewest distinct values"
    assert t.decided["delimiter"]["value"] == "tab" and len(t.texts) == 8 and t.refs[0] == f"{unnamed}:2"
    bare = _write(tmp_path / "b.tsv", rows)
    t = read_table(bare)
    assert t.decided["header"]["value"] == "no" and len(t.texts) == 8 and t.refs[0] == f"{bare}:1"
    t = read_table(bare, header="yes", delimiter="\t")
    assert len(t.texts) == 7 and t.decided["header"] == {"value": "yes", "how": "given", "flag": "--header"}
    assert t.decided["delimiter"] == {"value": "tab", "how": "given", "flag": "--delimiter"}
    t = read_table(bare, header="no", text_col="0", label_col="1")
    assert t.decided["text"] == {"value": "0", "how": "given", "flag": "--text-col"} and len(t.texts) == 8
    parquet = tmp_path / "p.jsonl"
    parquet.write_text(json.dumps({"body": "x y", "tag": "a"}) + "\n" + json.dumps({"body": "z", "tag": "b"}) + "\n")
    t = read_table(parquet)
    assert "delimiter" not in t.decided and "header" not in t.decided and t.decided["text"]["value"] == "body"


def test_row_policy_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path / "r.csv", "text,label\ngood,a\n,a\nfine,\nok,b\n")
    with pytest.raises(DataError, match=rf"^{p}:3: empty text in column 'text'; fill it in or delete the row \(2 such row\(s\); "
                                        r"without --strict they are skipped with a warning\)$"):
        read_table(p, strict=True)
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    t = read_table(p)
    assert t.texts == ["good", "ok"] and t.skipped == [(f"{p}:3", "empty text in column 'text'"),
                                                      (f"{p}:4", "missing label in column 'label'")]
    err = " ".join(capsys.readouterr().err.split())
    assert (f"skipped 2 row(s) of {p} with a missing label or an empty text: {p}:3 (empty text in column 'text'), "
            f"{p}:4 (missing label in column 'label'); --strict makes them an error") in err
    many = _write(tmp_path / "m.csv", "text,label\n" + "x,a\n" * 3 + ",a\n" * 12)
    read_table(many)
    assert "and 2 more; --strict makes them an error" in " ".join(capsys.readouterr().err.split())
    gone = _write(tmp_path / "g.csv", "text,label\ngood,a\n,b\n   ,b\n")
    with pytest.raises(DataError, match=rf"^{gone}: class 'b' has no usable row left: its rows have an empty text \(e\.g\. "
                                        rf"{gone}:3, {gone}:4\); fill the texts in or remove the class$"):
        read_table(gone)
    none = _write(tmp_path / "n.csv", "text,label\n,a\nx,\n")
    with pytest.raises(DataError, match=rf"^{none}: no usable row: all 2 rows have a missing label or an empty text "
                                        rf"\(e\.g\. {none}:2: empty text in column 'text'\)$"):
        read_table(none)


def test_file_and_column_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found$"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty$"):
        read_table(_write(tmp_path / "empty.csv", ""))
    with pytest.raises(DataError, match=r"head\.csv: no data rows$"):
        read_table(_write(tmp_path / "head.csv", "text,label\n"))
    with pytest.raises(DataError, match=r"one\.csv: the table has a single column; it needs a text column and a label column "
                                        r"\(if the file has several, give the separator with --delimiter\)$"):
        read_table(_write(tmp_path / "one.csv", "text\nabc\ndef\n"))
    same = _write(tmp_path / "same.csv", "text,label\na,b\nc,d\n")
    with pytest.raises(DataError, match=r"same\.csv: text and label columns are both 'text'; set --text-col and --label-col$"):
        read_table(same, text_col="text", label_col="text")
    with pytest.raises(DataError, match=r"same\.csv: --label-col 'lable' is not a column; did you mean 'label'\? columns are: text, label$"):
        read_table(same, label_col="lable")


def test_label_guess_warns_once_with_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path / "w.csv", "words,kind\n" + "".join(f"a longer sentence {i},{'xy'[i % 2]}\n" for i in range(6)))
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    t = read_table(p, header="yes")
    err = " ".join(capsys.readouterr().err.split())
    assert (f"{p}: no column is named like a label (label, labels, class, target, ...); using 'kind', the column with "
            "the fewest distinct values, as the label and 'words' as the text; --label-col/--text-col to choose") in err
    assert t.labels[:2] == ["x", "y"]
    read_table(p, header="yes", label_col="kind")
    assert "no column is named like a label" not in capsys.readouterr().err


def test_read_texts_lines_and_columns(tmp_path: Path) -> None:
    txt = _write(tmp_path / "t.txt", "first text\n\n  \nsecond text\n")
    assert read_texts(txt) == (["first text", "second text"], [f"{txt}:1", f"{txt}:4"])
    csv = _write(tmp_path / "t.csv", "id,comment\n1,a long comment here\n2,another\n")
    assert read_texts(csv) == (["a long comment here", "another"], [f"{csv}:2", f"{csv}:3"])
    other = _write(tmp_path / "o.csv", "id,words\n1,a long comment here\n2,another one\n")
    assert read_texts(other)[0] == ["a long comment here", "another one"]  # no known name: the longest column
    assert read_texts(other, text_col="id")[0] == ["1", "2"]
    jl = _write(tmp_path / "t.jsonl", '{"text": "x"}\n{"text": "y"}\n')
    assert read_texts(jl) == (["x", "y"], [f"{jl}:1", f"{jl}:2"])
    with pytest.raises(DataError, match=r"missing\.txt: file not found$"):
        read_texts(tmp_path / "missing.txt")


def test_image_lists_with_and_without_header(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for n in ("a.png", "b.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / n)
    with_header = _write(tmp_path / "list.csv", "id,image\n1,imgs/a.png\n2,imgs/b.png\n")
    assert read_image_list(with_header) == [tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "b.png"]
    bare = _write(tmp_path / "bare.csv", "imgs/a.png\nimgs/b.png\n")
    assert read_image_list(bare) == [tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "b.png"]
    absolute = _write(tmp_path / "abs.csv", f"{tmp_path / 'imgs' / 'b.png'}\n{tmp_path / 'imgs' / 'a.png'}\n")
    assert read_image_list(absolute) == [tmp_path / "imgs" / "b.png", tmp_path / "imgs" / "a.png"]
    missing = _write(tmp_path / "miss.csv", "path\nimgs/a.png\nimgs/c.png\n")
    with pytest.raises(DataError, match=r"miss\.csv:3: image 'imgs/c\.png' not found \(paths are relative to the table's folder\)$"):
        read_image_list(missing)
    missing_bare = _write(tmp_path / "miss2.csv", "imgs/a.png\nimgs/c.png\n")
    with pytest.raises(DataError, match=r"miss2\.csv:2: image 'imgs/c\.png' not found"):
        read_image_list(missing_bare)
    first_col = _write(tmp_path / "first.csv", "where,score\nimgs/a.png,1\n")
    assert read_image_list(first_col) == [tmp_path / "imgs" / "a.png"]


def test_structured_formats_by_extension_and_their_refs(tmp_path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame({"text": ["good one", "bad one", "fine one"], "label": ["p", "n", "p"]})
    df.to_parquet(tmp_path / "t.pq")
    df.to_json(tmp_path / "t.json", orient="records")
    (tmp_path / "t.ndjson").write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    for name, refs in (("t.pq", ["row 0", "row 1", "row 2"]), ("t.json", ["row 0", "row 1", "row 2"]), ("t.ndjson", ["1", "2", "3"])):
        t = read_table(tmp_path / name)
        assert t.texts == ["good one", "bad one", "fine one"] and t.labels == ["p", "n", "p"], name
        assert t.refs == [f"{tmp_path / name}:{r}" for r in refs], name
        assert "delimiter" not in t.decided, name
    numbers = tmp_path / "n.json"
    numbers.write_text(json.dumps([{"text": "a b", "label": "007"}, {"text": "c", "label": "1"}]))
    assert read_table(numbers).labels == ["007", "1"]  # labels stay as written, not parsed as numbers


def test_delimited_reading_keeps_texts_as_written(tmp_path: Path) -> None:
    tsv = _write(tmp_path / "q.tsv", 'text\tlabel\nhe said "hi\tpos\nshe said "bye" twice\tneg\n')
    assert read_table(tsv).texts == ['he said "hi', 'she said "bye" twice']  # tab files: quotes are text
    na = _write(tmp_path / "na.csv", "text,label\nnot applicable,NA\nnull,other\nsomething,NA\n")
    t = read_table(na)
    assert t.labels == ["NA", "other", "NA"] and t.texts[1] == "null"  # "NA" and "null" are values, not missing
    odd = _write(tmp_path / "colon.txt", "text:label\na b:x\nc d:y\n")
    t = read_table(odd, delimiter=":")
    assert t.decided["delimiter"] == {"value": ":", "how": "given", "flag": "--delimiter"} and t.labels == ["x", "y"]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_bytes(b"text;label\ncaf\xe9 au lait;drink\ntea;drink\nbread;food\n")
    t = read_table(tmp_path / "bad.csv")
    assert t.texts[0] == "caf\ufffd au lait" and t.decided["delimiter"]["value"] == "semicolon"
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "caf\xe9", "label": "x"}\n{"text": "t", "label": "y"}\n')
    assert read_table(tmp_path / "bad.jsonl").texts[0] == "caf\ufffd"
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\nsecond\n")
    assert read_texts(tmp_path / "bad.txt")[0] == ["caf\ufffd", "second"]


def test_read_texts_without_extension_and_by_longest_column(tmp_path: Path) -> None:
    plain = _write(tmp_path / "lines", "one text\nanother text\n")
    assert read_texts(plain) == (["one text", "another text"], [f"{plain}:1", f"{plain}:2"])
    cols = _write(tmp_path / "c.csv", "zz,aa\n1,a much longer text here\n2,and another long one\n")
    assert read_texts(cols)[0] == ["a much longer text here", "and another long one"]  # the longest, not the last name


@pytest.mark.parametrize("column", ["path", "File", "IMAGE", "filename", "filepath"])
def test_image_list_column_by_name(tmp_path: Path, column: str) -> None:
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    table = _write(tmp_path / "l.csv", f"note,{column}\nfirst,a.png\n")
    assert read_image_list(table) == [tmp_path / "a.png"]


def test_rows_are_named_by_their_line_after_blank_lines_and_quoted_line_breaks(tmp_path: Path) -> None:
    p = _write(tmp_path / "lines.csv", 'text,label\n"two\nlines",x\n\nmissing label,\nlast,y\n')
    t = read_table(p)
    assert t.refs == [f"{p}:2", f"{p}:6"] and t.skipped == [(f"{p}:5", "missing label in column 'label'")]
    assert read_texts(p)[1] == [f"{p}:2", f"{p}:5", f"{p}:6"]
    bare = _write(tmp_path / "bare.tsv", "one text\ta\n\n\nanother\tb\nthird\ta\nfourth\tb\n")
    assert read_table(bare, header="no").refs == [f"{bare}:1", f"{bare}:4", f"{bare}:5", f"{bare}:6"]


def test_a_text_longer_than_the_csv_modules_field_limit_is_read(tmp_path: Path) -> None:
    import csv

    long = "word " * (csv.field_size_limit() // 5 + 10)
    p = _write(tmp_path / "long.csv", f"text,label\n{long},a\nshort,b\n")
    t = read_table(p)
    assert len(t.texts[0]) > csv.field_size_limit() and t.refs == [f"{p}:2", f"{p}:3"]
