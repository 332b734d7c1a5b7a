"""Large tables are read a chunk at a time into a text store on disk: the same rows, labels, references, skipped
rows and decisions as the in-memory read, and the same fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import headstart
import headstart.data._tables as tables
from headstart.data import load_data, read_inputs, read_table
from headstart.data._textstore import LineRefs, TextStore, TextWriter
from tests.conftest import write_text_table


def _streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every table counts as large, in chunks of 7 rows: several chunks even for a small file."""
    monkeypatch.setattr(tables, "STREAM_FROM", 0)
    monkeypatch.setattr(tables, "CHUNK_ROWS", 7)


def _awkward(tmp: Path) -> list[Path]:
    """A CSV with a blank line, a quoted line break and rows to skip; JSON Lines; Parquet; a header-less TSV."""
    rows = [{"text": f"row {i} about {'sport' if i % 2 else 'food'}, with a comma", "label": "s" if i % 2 else "f"}
            for i in range(40)]
    rows[3]["label"], rows[8]["text"], rows[12]["text"] = "", "", "a text\nover two lines"
    csv_path, jsonl, parquet, tsv = tmp / "a.csv", tmp / "b.jsonl", tmp / "c.parquet", tmp / "d.tsv"
    df = pd.DataFrame(rows)
    df.to_csv(csv_path, index=False)
    csv_path.write_text(csv_path.read_text().replace("\n", "\n\n", 1))  # a blank line after the header
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    df.to_parquet(parquet)
    tsv.write_text("".join(f"{r['text'].replace(chr(10), ' ')}\t{r['label'] or 'f'}\n" for r in rows if r["text"]))
    return [csv_path, jsonl, parquet, tsv]


def test_a_streamed_table_reads_as_the_whole_file_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in _awkward(tmp_path):
        whole, ds_whole = read_table(path), load_data(path)
        with monkeypatch.context() as m:
            _streamed(m)
            part, ds_part = read_table(path), load_data(path)
        assert isinstance(part.texts, TextStore) and isinstance(part.refs, LineRefs), path
        assert list(part.texts) == whole.texts and list(part.refs) == whole.refs, path
        assert part.labels == whole.labels and part.skipped == whole.skipped and part.decided == whole.decided, path
        # the same examples, splits and cache key as the in-memory read
        assert isinstance(ds_part.items, TextStore) and ds_part.fingerprint() == ds_whole.fingerprint()
        assert list(ds_part.items) == list(ds_whole.items) and list(ds_part.refs) == list(ds_whole.refs)
        assert all(np.array_equal(getattr(ds_part, k), getattr(ds_whole, k)) for k in ("y", "train_idx", "test_idx"))
    refs = read_table(tmp_path / "a.csv").refs
    # after the blank line; rows 3 and 8 skipped; row 12 spans lines 15 and 16
    assert refs[0].endswith("a.csv:3") and refs[10].endswith("a.csv:15") and refs[11].endswith("a.csv:17")
    assert read_table(tmp_path / "c.parquet").refs[0].endswith("c.parquet:row 0")


def test_a_fit_and_its_predictions_on_a_streamed_table_are_the_in_memory_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=25, seed=3)
    whole = headstart.fit(str(data), model="scratch:bow", strategy="linear", cv_folds=2, out=str(tmp_path / "whole"))
    probs = whole.predict_proba(str(data))
    _streamed(monkeypatch)
    part = headstart.fit(str(data), model="scratch:bow", strategy="linear", cv_folds=2, out=str(tmp_path / "part"))
    assert part.metrics["test"] == whole.metrics["test"]
    texts, refs = read_inputs(data, "text")
    assert isinstance(texts, TextStore) and len(texts) == 50 and refs[0].endswith("t.csv:2")
    assert np.array_equal(part.predict_proba(str(data)), probs)
    predicted = part.predict(str(data))
    assert len(predicted) == 50 and predicted[-1]["input"].endswith("t.csv:51")


def test_a_text_store_is_removed_when_its_process_ends(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dead = cache / "texts" / "999999999-0"  # a store whose process was killed: removed by the next one
    dead.mkdir(parents=True)
    code = ("import sys; from headstart.data._textstore import TextWriter; from pathlib import Path; "
            "w = TextWriter(Path(sys.argv[1])); w.extend(['a', 'bé', '']); s = w.finish(); "
            "print(s.folder.is_dir(), s[1], s[2] == '', len(s.take([2, 0])))")
    out = subprocess.run([sys.executable, "-c", code, str(cache)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(headstart.__file__).parents[1])})
    assert out.stdout.split() == ["True", "bé", "True", "2"]
    assert not dead.exists() and list((cache / "texts").iterdir()) == []


def test_a_text_store_view_reads_only_its_rows_and_survives_pickling(tmp_path: Path) -> None:
    import pickle

    w = TextWriter(tmp_path)
    w.extend([f"text {i}" for i in range(5)])
    w.extend(["ünïcode"])
    store = w.finish()
    view = store.take([5, 1, 3])
    assert list(view) == ["ünïcode", "text 1", "text 3"] and view[1:] == ["text 1", "text 3"]
    again = pickle.loads(pickle.dumps(view.take([0, 2])))  # as a DataLoader worker gets it: it opens its own file
    assert again._fd is None and list(again) == ["ünïcode", "text 3"]


def test_a_text_store_goes_with_its_last_view_but_not_with_a_workers_copy(tmp_path: Path) -> None:
    import gc
    import pickle

    w = TextWriter(tmp_path)
    w.extend(["one", "two", "three"])
    store = w.finish()
    folder, view = store.folder, store.take([2])
    del store, w
    gc.collect()
    assert folder.is_dir() and list(view) == ["three"]  # the view still reads it
    copy = pickle.loads(pickle.dumps(view))  # as a DataLoader worker holds it
    del copy
    gc.collect()
    assert folder.is_dir()
    del view
    gc.collect()
    assert not folder.exists()


def test_a_forked_worker_that_lets_go_of_a_store_leaves_it_to_its_writer(tmp_path: Path) -> None:
    import gc

    w = TextWriter(tmp_path)
    w.extend(["one", "two"])
    store = w.finish()
    del w
    pid = os.fork()  # as a DataLoader worker is started on Linux: the child holds copies of the same objects
    if pid == 0:  # never back into pytest from here, whatever happens
        code = 2
        try:
            folder = store.folder
            del store
            gc.collect()  # the child's last view goes: its copy of the owner is collected there
            code = 0 if folder.is_dir() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and list(store) == ["one", "two"]
