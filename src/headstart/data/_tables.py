"""Tables of texts: CSV, TSV, JSONL and Parquet, header or not.

Column choice, unless the user names them (``--text-col``/``--label-col``):

* text: a column named like text/sentence/review/...; else the string column
  with the longest mean length;
* label: a column named like label/class/target/...; else the remaining
  column with the fewest distinct values.

Header detection (``header="auto"``): the first row is a header when one of
its cells is a usual column name (text, label, ...) or a column was named by
the user, or else when its value in the label column occurs nowhere else in
that column (a real label value repeats; a column name does not). Rows are reported 1-based as lines of the
file, so an error message points at the line an editor shows.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._progress import warn
from ..errors import DataError, did_you_mean
from ._textstore import STREAM_FROM, TextSink, line_ref

if TYPE_CHECKING:  # imported where used: commands that do not need pandas do not pay for it
    import pandas as pd

TEXT_NAMES = ("text", "sentence", "content", "review", "message", "document", "body", "tweet", "comment", "sms", "question")
LABEL_NAMES = ("label", "labels", "class", "target", "category", "y", "sentiment", "tag")
DELIMITER_SHOWN = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}
TABLE_EXTENSIONS = {".csv", ".tsv", ".tab", ".txt", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"}


DELIMITERS = ",;\t|"  # what `--delimiter`-less reading considers, for .csv/.tsv/.txt
SNIFF_BYTES = 64 * 1024
CHUNK_ROWS = 50_000  # rows of a large table (`STREAM_FROM`) read at a time


def sniff_delimiter(path: Path) -> str:
    """The field separator of a delimited text file: comma, semicolon, tab or pipe.

    `csv.Sniffer` on the first 64 KiB, limited to those four: it picks the character whose count per line is
    most consistent, so commas inside the texts of a semicolon file do not win. Undecided: the extension's
    default (comma for .csv, tab otherwise).
    """
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        sample = fh.read(SNIFF_BYTES)
    if len(sample) == SNIFF_BYTES:  # do not judge a cut-off last line
        sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return "," if path.suffix.lower() == ".csv" else "\t"


def _jsonl_frames(path: Path, chunk: int | None) -> Iterator[pd.DataFrame]:
    """One JSON object per line, ``chunk`` objects a frame; a bad line is named by its line number (pandas reports
    a character offset)."""
    import json

    import pandas as pd

    records, lines = [], []

    def frame() -> pd.DataFrame:
        df = pd.DataFrame.from_records(records).astype(object)
        df.attrs["lines"] = list(lines)  # each row's line in the file, for messages
        records.clear()
        lines.clear()
        return df

    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg}, column {e.colno}); each line must be one "
                                "JSON object, e.g. {\"text\": \"...\", \"label\": \"...\"}") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{n}: a JSON {type(rec).__name__}, not an object; each line must be one "
                                "JSON object with the text and label fields")
            records.append(rec)
            lines.append(n)
            if chunk is not None and len(records) == chunk:
                yield frame()
    if records or chunk is None:
        yield frame()


def _frames(path: Path, header: bool, delimiter: str | None = None, chunk: int | None = None) -> Iterator[pd.DataFrame]:
    """The file as tables of strings (Parquet/JSON keep their own types), ``chunk`` rows at a time (None: whole).
    Each frame's ``attrs["lines"]`` is each row's line in the file, or minus its 0-based position for JSON and
    Parquet rows, which have no line (`LineRefs` names them ``row N``). ``delimiter``: None = sniffed."""
    import pandas as pd  # here, not at import: image-only commands do not pay for it

    def by_position(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        read = 0
        for df in frames:
            df = df.astype(object)
            df.attrs["lines"] = [-(read + i) for i in range(len(df))]
            read += len(df)
            yield df

    ext = path.suffix.lower()
    try:
        if ext in (".parquet", ".pq"):
            if chunk is None:
                yield from by_position(iter([pd.read_parquet(path)]))
                return
            import pyarrow.parquet as pq

            yield from by_position(b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=chunk))
            return
        if ext in (".jsonl", ".ndjson"):
            yield from _jsonl_frames(path, chunk)
            return
        if ext == ".json":  # one JSON document: read whole, whatever its size
            yield from by_position(iter([pd.read_json(path, dtype=False)]))
            return
        sep = delimiter or sniff_delimiter(path)
        quoting = csv.QUOTE_MINIMAL if ext == ".csv" or sep != "\t" else csv.QUOTE_NONE
        starts = _record_starts(path, sep, quoting)
        if header:
            next(starts, None)
        read = 0
        options = dict(
            sep=sep,
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            quoting=quoting,
            encoding="utf-8-sig",  # a byte-order mark (what spreadsheets save) is not part of the first column's name
            encoding_errors="replace",
            skip_blank_lines=True,
            on_bad_lines="error",
        )
        with (contextlib.nullcontext([pd.read_csv(path, **options)]) if chunk is None
              else pd.read_csv(path, chunksize=chunk, **options)) as reader:
            for df in reader:
                # each row's line in the file, blank lines and quoted line breaks counted (else by position)
                lines = list(itertools.islice(starts, len(df)))
                df.attrs["lines"] = lines if len(lines) == len(df) else [read + i + (2 if header else 1) for i in range(len(df))]
                read += len(df)
                yield df
    except (pd.errors.ParserError, ValueError, UnicodeError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise DataError(f"{path}: cannot read as a {ext or 'text'} table ({first}); check the quoting, or give the "
                        "separator with --delimiter") from None


def _read_raw(path: Path, header: bool, delimiter: str | None = None) -> pd.DataFrame:
    """The whole file as one table (`_frames` in one piece)."""
    return next(_frames(path, header, delimiter))


def _record_starts(path: Path, sep: str, quoting: int) -> Iterator[int]:
    """The line on which each non-blank record of a delimited file starts (pandas skips blank lines, so a row's
    position alone would name the wrong line after one; a quoted field may also span lines). Stops early when the
    csv module cannot read the file (e.g. a text longer than its field limit): rows are then numbered by position."""
    end = 0
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep, quoting=quoting)
        try:
            for row in reader:
                if row:
                    yield end + 1
                end = reader.line_num
        except csv.Error:
            return


def _is_structured(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq", ".jsonl", ".ndjson", ".json")


def _by_name(cols: list[str], names: tuple[str, ...]) -> str | None:
    lower = {str(c).strip().lower(): c for c in cols}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _guess_columns(df: pd.DataFrame, text_col: str | None, label_col: str | None,
                   where: Path | str = "table") -> tuple[str, str, str, str]:
    """(text column, label column, how each was chosen): given, by its name, or by its content."""
    cols = list(df.columns)
    if len(cols) < 2:
        raise DataError(f"{where}: the table has a single column; it needs a text column and a label column "
                        "(if the file has several, give the separator with --delimiter)")
    text = text_col if text_col is not None else _by_name([str(c) for c in cols], TEXT_NAMES)
    label = label_col if label_col is not None else _by_name([str(c) for c in cols], LABEL_NAMES)
    how_text = "given" if text_col is not None else "detected: its name" if text is not None else "detected: longest texts"
    how_label = "given" if label_col is not None else "detected: its name" if label is not None else "detected: fewest distinct values"
    as_str = df.astype(str)
    if text is None:
        rest = [c for c in cols if c != label]
        text = max(rest, key=lambda c: as_str[c].str.len().mean())
    if label is None:
        rest = [c for c in cols if c != text]
        label = min(rest, key=lambda c: as_str[c].nunique())
    return text, label, how_text, how_label


def _resolve_col(df: pd.DataFrame, name: str | None, option: str, path: Path) -> str | None:
    """Accept a column name, or a 0-based column number for header-less files."""
    if name is None:
        return None
    if name in df.columns:
        return name
    if name.isdigit() and int(name) in df.columns:
        return int(name)  # type: ignore[return-value]
    cols = [str(c) for c in df.columns]
    raise DataError(f"{path}: {option} {name!r} is not a column; {did_you_mean(name, cols)}columns are: {', '.join(cols)}")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


def _check_rows(df: pd.DataFrame | None, path: Path) -> pd.DataFrame:
    if df is None or len(df) == 0 or len(df.columns) == 0:
        raise DataError(f"{path}: no data rows")
    return df


def _first(frames: Iterator[pd.DataFrame], path: Path) -> pd.DataFrame:
    return _check_rows(next(frames, None), path)


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v) or str(v).strip() == ""


@dataclass
class Table:
    """A labeled text table as read: the usable rows, the rows skipped and what was decided about the file.

    ``texts`` are strings, or (first, second) pairs when two text columns were given; ``labels`` the label
    cells as read: a string, a list (a JSON/Parquet list), or a tuple of cells when several label columns
    were given (``label_columns`` names them). ``decided`` maps text/label/delimiter/header to
    ``{"value", "how", "flag"}``: the choice, whether it was given or detected (and from what), and the flag
    that overrides it. Fits show it in their summary, metrics.json and report.
    """

    texts: Sequence[Any]  # a list, or a `TextStore` for a table larger than `STREAM_FROM`
    labels: list[Any]
    refs: Sequence[str]  # a list, or `LineRefs`
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason)
    decided: dict[str, dict[str, str]] = field(default_factory=dict)
    label_columns: list[str] = field(default_factory=list)
    groups: list[str] | None = None  # ``--group-col``: each usable row's group (a blank cell: the row alone)


def as_columns(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``--text-col``/``--label-col`` as a list: None, one name, or several (the option repeated)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _cell(v: Any) -> Any:
    """A label cell as read: a list stays a list (JSON Lines, Parquet), anything else a stripped string."""
    if isinstance(v, (list, tuple)) or (hasattr(v, "tolist") and not isinstance(v, (str, bytes)) and getattr(v, "ndim", 0) == 1):
        return list(v.tolist() if hasattr(v, "tolist") else v)
    return str(v).strip()


def read_table(path: Path, text_col: str | list[str] | None = None, label_col: str | list[str] | None = None,
               header: str = "auto", delimiter: str | None = None, strict: bool = False, partial: bool = False,
               group_col: str | None = None) -> Table:
    """Read a labeled text table; refs are ``file:line`` (the line an editor shows).

    ``text_col``: one column, or two (a pair of texts, e.g. sentence1 and sentence2, encoded as the
    backbone's tokenizer encodes pairs). ``label_col``: one column, or several (one multilabel target of
    0/1 columns, or several regression values; see `headstart.targets`). ``group_col``: a column whose equal
    values must stay on one side of every split (``Table.groups``).
    A row with a missing label or an empty text is skipped, with one warning naming up to 10 of them (the
    same policy as unreadable images); ``strict`` makes the first one an error. No usable row at all, or a
    class whose every row was skipped, is an error either way. ``partial`` (several targets): a row is skipped
    only when every label is missing, and a missing one is None in its tuple of cells.
    """
    _check_file(path)
    text_cols, label_cols = as_columns(text_col), as_columns(label_col)
    if len(text_cols) > 2:
        raise DataError(f"{path}: --text-col given {len(text_cols)} times; give one text column, or two for pairs")
    structured = _is_structured(path)
    sep = None if structured else (delimiter or sniff_delimiter(path))
    stream = path.stat().st_size > STREAM_FROM
    chunk = CHUNK_ROWS if stream else None
    frames = None
    if structured:
        has_header = True
    elif header == "auto":
        probe = _frames(path, header=False, delimiter=sep, chunk=chunk)
        df = _first(probe, path)  # the first chunk decides
        first = {str(v).strip().lower() for v in df.iloc[0].tolist()}
        named = bool(first & set(TEXT_NAMES + LABEL_NAMES)) or any(not c.isdigit() for c in text_cols + label_cols)
        if named:
            has_header = True
        else:
            _, guess_label, _, _ = _guess_columns(df.iloc[1:] if len(df) > 1 else df, None, None, path)
            col = df[guess_label].astype(str)
            has_header = len(df) > 2 and (col == col.iloc[0]).sum() == 1 and col.iloc[1:].nunique() < 0.5 * (len(df) - 1)
        if not has_header:  # what was read is the table: go on from there
            frames = itertools.chain([df], probe)
        del df, probe  # else before reading again: not two copies of a large table at once
    else:
        has_header = header == "yes"
    frames = frames or _frames(path, header=has_header, delimiter=sep, chunk=chunk)
    df = _first(frames, path)
    tcs = [_resolve_col(df, c, "--text-col", path) for c in text_cols]
    lcs = [_resolve_col(df, c, "--label-col", path) for c in label_cols]
    tcol, lcol, how_text, how_label = _guess_columns(df, tcs[0] if tcs else None, lcs[0] if lcs else None, path)
    tcs, lcs = tcs or [tcol], lcs or [lcol]
    if set(tcs) & set(lcs):
        both = sorted(str(c) for c in set(tcs) & set(lcs))
        raise DataError(f"{path}: text and label columns are both {both[0]!r}; set --text-col and --label-col")
    gc = _resolve_col(df, group_col, "--group-col", path) if group_col is not None else None
    if gc is not None and gc in set(tcs) | set(lcs):
        raise DataError(f"{path}: --group-col {group_col!r} is also the text or label column; name the column that "
                        "identifies the groups (a patient, a user, a document)")
    table = Table([], [], [], label_columns=[str(c) for c in lcs], decided={
        "text": {"value": " + ".join(str(c) for c in tcs), "how": how_text, "flag": "--text-col"},
        "label": {"value": ", ".join(str(c) for c in lcs), "how": how_label, "flag": "--label-col"},
    })
    if sep is not None:
        table.decided["delimiter"] = {"value": DELIMITER_SHOWN.get(sep, sep), "how": "given" if delimiter else "detected",
                                      "flag": "--delimiter"}
        table.decided["header"] = {"value": "yes" if has_header else "no",
                                   "how": "given" if header != "auto" else "detected", "flag": "--header"}
    if gc is not None:
        table.groups = []
        table.decided["group"] = {"value": str(gc), "how": "given", "flag": "--group-col"}
    lost_labels: set[str] = set()
    sink = TextSink(str(path), stream and len(tcs) == 1)  # a large table's texts go to disk (pairs stay here)
    names: dict[str, str] = {}

    def cell(v: Any) -> Any:  # one string object per label value, however many rows repeat it
        return names.setdefault(v, v) if isinstance(v, str) else v

    for df in itertools.chain([df], frames):
        lines = df.attrs["lines"]
        # the columns as lists, a row's cells gathered as it is read: not a tuple per row for the whole table
        tcells, lcells = [df[c].tolist() for c in tcs], [df[c].tolist() for c in lcs]
        cells = df[gc].tolist() if gc is not None else None
        del df
        texts, kept = [], []
        for i in range(len(tcells[0])):
            ts, labs = [col[i] for col in tcells], [col[i] for col in lcells]
            ref = line_ref(str(path), lines[i])
            blanks = [c for c, v in zip(lcs, labs) if not isinstance(_cell(v), list) and _blank(v)]
            blank_label = (blanks[0] if len(blanks) == len(lcs) else None) if partial else next(iter(blanks), None)
            blank_text = next((c for c, v in zip(tcs, ts) if _blank(v)), None)
            if blank_label is not None:
                table.skipped.append((ref, f"missing label in column {blank_label!r}"))
            elif blank_text is not None:
                table.skipped.append((ref, f"empty text in column {blank_text!r}"))
                if len(lcs) == 1 and isinstance(_cell(labs[0]), str):
                    lost_labels.add(_cell(labs[0]))
            else:
                texts.append(str(ts[0]) if len(ts) == 1 else tuple(str(t) for t in ts))
                if partial:
                    table.labels.append(tuple(None if c in blanks else cell(_cell(v)) for c, v in zip(lcs, labs)))
                else:
                    table.labels.append(cell(_cell(labs[0])) if len(labs) == 1 else tuple(cell(_cell(v)) for v in labs))
                kept.append(lines[i])
                if table.groups is not None:
                    table.groups.append(ref if _blank(cells[i]) else str(_cell(cells[i])).strip())
        sink.extend(texts, kept)
    table.texts, table.refs = sink.result()
    if how_label.startswith("detected: fewest"):  # a guess from the content: say so before minutes of training
        warn(f"{path}: no column is named like a label ({', '.join(LABEL_NAMES[:4])}, ...); using {lcol!r}, the column "
             f"with the fewest distinct values, as the label and {tcol!r} as the text; --label-col/--text-col to choose")
    _rows_policy(table, path, strict, lost_labels)
    return table


def _rows_policy(table: Table, path: Path, strict: bool, lost_labels: set[str]) -> None:
    """Errors first (strict, nothing usable, a class emptied), else one warning for the rows skipped."""
    bad = table.skipped
    if not bad:
        return
    if strict:
        ref, why = bad[0]
        raise DataError(f"{ref}: {why}; fill it in or delete the row ({len(bad)} such row(s); without --strict "
                        "they are skipped with a warning)")
    if not table.texts:
        raise DataError(f"{path}: no usable row: all {len(bad)} rows have a missing label or an empty text "
                        f"(e.g. {bad[0][0]}: {bad[0][1]})")
    lost = sorted(lost_labels - {v for v in table.labels if isinstance(v, str)})
    if lost:
        rows = [r for r, why in bad if why.startswith("empty")][:3]
        raise DataError(f"{path}: class {lost[0]!r} has no usable row left: its rows have an empty text (e.g. "
                        f"{', '.join(rows)}); fill the texts in or remove the class")
    shown = ", ".join(f"{ref} ({why})" for ref, why in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    warn(f"skipped {len(bad)} row(s) of {path} with a missing label or an empty text: {shown}{more}; "
         "--strict makes them an error")


def read_texts(path: Path, text_col: str | list[str] | None = None) -> tuple[Sequence[Any], Sequence[str]]:
    """Unlabeled texts for prediction: (texts, refs). A .txt file is one text per line;
    a table gives its text column (named, or detected as for `read_table`), or the (first, second) pairs
    of two named columns. A file larger than `STREAM_FROM` is read a chunk at a time into a `TextStore`."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    cols = as_columns(text_col)
    stream = path.stat().st_size > STREAM_FROM
    sink = TextSink(str(path), stream and len(cols) < 2)
    if path.suffix.lower() in (".txt", "") and len(cols) < 2:
        with open(path, encoding="utf-8", errors="replace") as fh:
            numbered = ((n, ln.rstrip("\r\n")) for n, ln in enumerate(fh, start=1))
            while block := list(itertools.islice(numbered, CHUNK_ROWS)):
                part = [(n, ln) for n, ln in block if ln.strip()]
                sink.extend([ln for _, ln in part], [n for n, _ in part])
    else:
        _check_file(path)
        frames = _frames(path, header=True, chunk=CHUNK_ROWS if stream else None)
        df = _first(frames, path)
        found = [_resolve_col(df, c, "--text-col", path) for c in cols]
        if not found:
            col = _by_name([str(c) for c in df.columns], TEXT_NAMES)
            found = [col if col is not None else max(df.columns, key=lambda c: df[c].astype(str).str.len().mean())]
        for df in itertools.chain([df], frames):
            rows = zip(*(df[c].tolist() for c in found))
            sink.extend([str(r[0]) if len(r) == 1 else tuple(str(t) for t in r) for r in rows], df.attrs["lines"])
    return sink.result()


def read_image_list(table: Path) -> list[Path]:
    """Image paths listed in a table (column path/file/image/filename, else the first one), for prediction.
    A header-less list is recognised by its first line being an existing file; relative paths are
    taken from the table's folder."""
    _check_file(table)
    sep = None if _is_structured(table) else sniff_delimiter(table)
    df = _check_rows(_read_raw(table, header=True, delimiter=sep), table)
    first = Path(str(df.columns[0]))
    has_header = sep is not None and not (first if first.is_absolute() else table.parent / first).is_file()
    if sep is not None and not has_header:
        df = _check_rows(_read_raw(table, header=False, delimiter=sep), table)
    cols = {str(c).strip().lower(): c for c in df.columns}
    col = next((cols[n] for n in ("path", "file", "image", "filename", "filepath") if n in cols), df.columns[0])
    out = []
    for i, v in enumerate(df[col].astype(str).tolist()):
        q = Path(v)
        q = q if q.is_absolute() else table.parent / q
        if not q.is_file():
            line = max(df.attrs["lines"][i], i + 1)  # a Parquet/JSON row (no line): by its 1-based position
            raise DataError(f"{table}:{line}: image {v!r} not found (paths are relative to the table's folder)")
        out.append(q)
    return out
