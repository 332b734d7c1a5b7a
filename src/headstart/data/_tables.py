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

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:  # imported where used: commands that do not need pandas do not pay for it
    import pandas as pd

TEXT_NAMES = ("text", "sentence", "content", "review", "message", "document", "body", "tweet", "comment", "sms", "question")
LABEL_NAMES = ("label", "labels", "class", "target", "category", "y", "sentiment", "tag")
TABLE_EXTENSIONS = {".csv", ".tsv", ".tab", ".txt", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"}


def _read_raw(path: Path, header: bool) -> pd.DataFrame:
    import pandas as pd  # here, not at import: image-only commands do not pay for it

    ext = path.suffix.lower()
    try:
        if ext in (".parquet", ".pq"):
            return pd.read_parquet(path).astype(object)
        if ext in (".jsonl", ".ndjson", ".json"):
            return pd.read_json(path, lines=ext != ".json", dtype=False).astype(object)
        sep = "," if ext == ".csv" else "\t"
        quoting = csv.QUOTE_MINIMAL if ext == ".csv" else csv.QUOTE_NONE
        return pd.read_csv(
            path,
            sep=sep,
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            quoting=quoting,
            encoding="utf-8",
            encoding_errors="replace",
            skip_blank_lines=True,
            on_bad_lines="error",
        )
    except (pd.errors.ParserError, ValueError, UnicodeError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise DataError(f"{path}: cannot read as a {ext or 'text'} table ({first}); check the delimiter and quoting") from None


def _is_structured(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq", ".jsonl", ".ndjson", ".json")


def _by_name(cols: list[str], names: tuple[str, ...]) -> str | None:
    lower = {str(c).strip().lower(): c for c in cols}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _guess_columns(df: pd.DataFrame, text_col: str | None, label_col: str | None, where: Path | str = "table") -> tuple[str, str]:
    cols = list(df.columns)
    if len(cols) < 2:
        raise DataError(f"{where}: the table has a single column; it needs a text column and a label column "
                        "(check the delimiter: .csv is comma-separated, .tsv/.txt tab-separated)")
    text = text_col if text_col is not None else _by_name([str(c) for c in cols], TEXT_NAMES)
    label = label_col if label_col is not None else _by_name([str(c) for c in cols], LABEL_NAMES)
    as_str = df.astype(str)
    if text is None:
        rest = [c for c in cols if c != label]
        text = max(rest, key=lambda c: as_str[c].str.len().mean())
    if label is None:
        rest = [c for c in cols if c != text]
        label = min(rest, key=lambda c: as_str[c].nunique())
    return text, label


def _resolve_col(df: pd.DataFrame, name: str | None, option: str, path: Path) -> str | None:
    """Accept a column name, or a 0-based column number for header-less files."""
    if name is None:
        return None
    if name in df.columns:
        return name
    if name.isdigit() and int(name) in df.columns:
        return int(name)  # type: ignore[return-value]
    cols = ", ".join(str(c) for c in df.columns)
    raise DataError(f"{path}: {option} {name!r} is not a column; columns are: {cols}")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


def _check_rows(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    if len(df) == 0 or len(df.columns) == 0:
        raise DataError(f"{path}: no data rows")
    return df


def read_table(
    path: Path, text_col: str | None = None, label_col: str | None = None, header: str = "auto"
) -> tuple[list[str], list[str], list[str]]:
    """Return (texts, labels, refs) of a labeled text table; refs are ``file:line``."""
    _check_file(path)
    structured = _is_structured(path)
    if structured:
        df = _read_raw(path, header=True)
        first_line = 1 if path.suffix.lower() in (".jsonl", ".ndjson") else 0
        has_header = False
    elif header == "auto":
        df = _read_raw(path, header=False)
        first = {str(v).strip().lower() for v in df.iloc[0].tolist()}
        named = bool(first & set(TEXT_NAMES + LABEL_NAMES)) or any(
            c is not None and not c.isdigit() for c in (text_col, label_col))
        if named:
            has_header = True
        else:
            _, guess_label = _guess_columns(df.iloc[1:] if len(df) > 1 else df, None, None, path)
            col = df[guess_label].astype(str)
            has_header = len(df) > 2 and (col == col.iloc[0]).sum() == 1 and col.iloc[1:].nunique() < 0.5 * (len(df) - 1)
        if has_header:
            df = _read_raw(path, header=True)
        first_line = 2 if has_header else 1
    else:
        has_header = header == "yes"
        df = _read_raw(path, header=has_header)
        first_line = 2 if has_header else 1
    _check_rows(df, path)
    tc = _resolve_col(df, text_col, "--text-col", path)
    lc = _resolve_col(df, label_col, "--label-col", path)
    tcol, lcol = _guess_columns(df, tc, lc, path)
    if tcol == lcol:
        raise DataError(f"{path}: text and label columns are both {tcol!r}; set --text-col and --label-col")
    texts, labels, refs = [], [], []
    for i, (t, lab) in enumerate(zip(df[tcol].tolist(), df[lcol].tolist())):
        ref = f"{path}:{i + first_line}" if first_line else f"{path}:row {i}"
        if lab is None or (isinstance(lab, float) and lab != lab) or str(lab).strip() == "":
            raise DataError(f"{ref}: missing label in column {lcol!r}; fill it in or delete the row")
        if t is None or (isinstance(t, float) and t != t) or str(t).strip() == "":
            raise DataError(f"{ref}: empty text in column {tcol!r}; fill it in or delete the row")
        texts.append(str(t))
        labels.append(str(lab).strip())
        refs.append(ref)
    return texts, labels, refs


def read_texts(path: Path, text_col: str | None = None) -> tuple[list[str], list[str]]:
    """Unlabeled texts for prediction: (texts, refs). A .txt file is one text per line;
    a table gives its text column (named, or detected as for `read_table`)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() in (".txt", ""):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [(ln, f"{path}:{i + 1}") for i, ln in enumerate(lines) if ln.strip()]
        return [t for t, _ in kept], [r for _, r in kept]
    _check_file(path)
    df = _check_rows(_read_raw(path, header=True), path)
    col = _resolve_col(df, text_col, "--text-col", path) or _by_name([str(c) for c in df.columns], TEXT_NAMES)
    if col is None:
        col = max(df.columns, key=lambda c: df[c].astype(str).str.len().mean())
    first = 1 if _is_structured(path) else 2
    texts = [str(t) for t in df[col].tolist()]
    return texts, [f"{path}:{i + first}" for i in range(len(texts))]


def read_image_list(table: Path) -> list[Path]:
    """Image paths listed in a table (column path/file/image/filename, else the first one), for prediction.
    A header-less list is recognised by its first line being an existing file; relative paths are
    taken from the table's folder."""
    _check_file(table)
    df = _check_rows(_read_raw(table, header=True), table)
    first = Path(str(df.columns[0]))
    has_header = not _is_structured(table) and not (first if first.is_absolute() else table.parent / first).is_file()
    if not _is_structured(table) and not has_header:
        df = _check_rows(_read_raw(table, header=False), table)
    cols = {str(c).strip().lower(): c for c in df.columns}
    col = next((cols[n] for n in ("path", "file", "image", "filename", "filepath") if n in cols), df.columns[0])
    out = []
    for i, v in enumerate(df[col].astype(str).tolist()):
        q = Path(v)
        q = q if q.is_absolute() else table.parent / q
        if not q.is_file():
            line = i + 2 if has_header else i + 1
            raise DataError(f"{table}:{line}: image {v!r} not found (paths are relative to the table's folder)")
        out.append(q)
    return out
