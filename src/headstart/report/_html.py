"""The pieces every headstart page is made of: one self-contained HTML file (plots and thumbnails inlined as
data URIs, no script, no external file), human labels and units for the figures, tables that wrap instead of
scrolling sideways, and folded sections for what only some readers want.

A figure is written for a person: ``accuracy 0.9021`` reads "Accuracy 90.2%", ``wall_seconds 41.27`` reads
"Wall time 41 s", ``mfu 0.1969`` reads "MFU 19.7%". Keys without a label here are shown capitalised, with
spaces for underscores.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# key -> (label, unit kind): "%" a fraction shown as a percentage, "s" seconds, "n" a count, "g" a quantity to three
# significant digits, "x" a plain number (a score or a loss: four decimals)
LABELS: dict[str, tuple[str, str]] = {
    "n": ("Examples", "n"),
    "accuracy": ("Accuracy", "%"),
    "balanced_accuracy": ("Balanced accuracy", "%"),
    "macro_f1": ("Macro F1", "%"),
    "micro_f1": ("Micro F1", "%"),
    "roc_auc": ("ROC AUC", "x"),
    "mean_average_precision": ("Mean average precision", "%"),
    "subset_accuracy": ("Exact-match accuracy", "%"),
    "hamming_loss": ("Hamming loss", "x"),
    "log_loss": ("Log-loss", "x"),
    "score": ("Score", "x"),
    "mae": ("Mean absolute error", "x"),
    "rmse": ("Root mean squared error", "x"),
    "r2": ("R²", "x"),
    "spearman": ("Spearman correlation", "x"),
    "pearson": ("Pearson correlation", "x"),
    "precision": ("Precision", "%"),
    "recall": ("Recall", "%"),
    "f1": ("F1", "%"),
    "support": ("Support", "n"),
    "ece": ("Expected calibration error", "%"),
    "wall_seconds": ("Wall time", "s"),
    "train_seconds": ("Training time", "s"),
    "score_seconds": ("Scoring time", "s"),
    "seconds": ("Time", "s"),
    "samples_per_second": ("Training throughput (examples/s)", "g"),
    "mfu": ("MFU (share of this machine's matmul peak)", "%"),
    "achieved_gflops": ("Achieved GFLOP/s", "g"),
    "peak_gflops": ("Peak GFLOP/s", "g"),
    "kept_epoch": ("Epoch kept", "n"),
    "epochs_run": ("Epochs run", "n"),
    "n_train": ("Training examples", "n"),
    "n_val": ("Selection examples", "n"),
    "n_test": ("Held-out examples", "n"),
    "trainable_parameters": ("Trainable parameters", "n"),
    "trainable_percent": ("Trainable (% of backbone)", "g"),
    "labels_per_class": ("Labels per class", "g"),
    "skipped_files": ("Unreadable files skipped", "n"),
    "skipped_rows": ("Unusable rows skipped", "n"),
    "lr": ("Learning rate", "x"),
    "batch_size": ("Batch size", "n"),
    "epochs": ("Epochs", "n"),
    "seed": ("Seed", "n"),
    "ci95": ("95% interval (±)", "%"),
    "candidate": ("Candidate", "x"),
    "dim": ("Feature size", "n"),
    "params": ("Parameters", "n"),
    "extract_s": ("Feature extraction", "s"),
    "score_s": ("Scoring", "s"),
    "proxy_s": ("Proxy fit", "s"),
    "logme": ("LogME", "x"),
    "hscore": ("H-score", "x"),
    "leep": ("LEEP", "x"),
    "nce": ("NCE", "x"),
    "knn": ("kNN accuracy", "%"),
    "linear": ("Linear-probe accuracy", "%"),
    "proxy": ("Fine-tuning proxy", "%"),
    "strategy": ("Strategy", "x"),
    "budget": ("Budget", "x"),
    "method": ("Method", "x"),
    "shots": ("Shots", "n"),
    "episodes": ("Episodes", "n"),
    "median": ("Median", "g"),
    "p95": ("95th percentile", "g"),
    "cv_mean": ("CV mean", "x"),
    "cv_std": ("CV std", "x"),
    "cv_ci95": ("CV 95% interval", "x"),
    "seeds_mean": ("Mean over seeds", "x"),
    "seeds_std": ("Std over seeds", "x"),
    "best_objective": ("Best objective", "x"),
    "trials": ("Trials", "n"),
    "held_out": ("Held out", "x"),
    "selection_log_loss": ("Selection log-loss", "x"),
    "objective": ("Objective", "x"),
    "selection_score": ("Selection score", "x"),
}


def label(key: str) -> str:
    """A person's name for a figure's key."""
    if key in LABELS:
        return LABELS[key][0]
    text = str(key).replace("_", " ")
    return text[:1].upper() + text[1:]


def fmt(key: str, value: Any) -> str:
    """A value as a person reads it, in the key's unit."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        unit = LABELS.get(key, ("", "x"))[1]
        if unit == "%" and -1.0 <= v <= 1.0:
            return f"{100 * v:.1f}%"
        if unit == "s":
            return f"{v:.1f} s" if v < 100 else f"{v:,.0f} s"
        if unit == "n" and v.is_integer():
            return f"{int(v):,}"
        if unit == "g":
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        if v == 0 or 0.01 <= abs(v) < 1000:
            return f"{v:.4f}"  # scores and losses: four decimals, 1.0 included
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(key, v) for v in value)
    return str(value)


def esc(text: Any) -> str:
    return html.escape(str(text))


STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1.5em;
color:#1f2328;line-height:1.45;overflow-wrap:anywhere}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.lead{font-size:1.05em;color:#424a53}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid #d0d7de;border-radius:8px;padding:.6em 1em;min-width:10em}
.card .v{font-size:1.6em;font-weight:600}.card .k{color:#59636e;font-size:.9em}
table{border-collapse:collapse;margin:.4em 0 1.2em;max-width:100%}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f6f8fa;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.wide{width:100%;table-layout:fixed}
figure{display:inline-block;margin:.4em .8em .8em 0;max-width:100%}figure img{max-width:100%;height:auto}
figcaption{color:#59636e;font-size:.9em}
details{margin:.6em 0;border:1px solid #d0d7de;border-radius:6px;padding:.4em .8em}
summary{cursor:pointer;font-weight:600}
code,pre{background:#f6f8fa;border-radius:4px;font-size:.92em}
pre{padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere}
.examples{display:flex;flex-wrap:wrap;gap:.6em}
.ex{border:1px solid #d0d7de;border-radius:6px;padding:.4em;width:15em;font-size:.88em}
.ex.wide{width:24em}.ex img{display:block;width:100%;height:auto;image-rendering:pixelated}
.muted{color:#59636e}
"""


def page(title: str, body: str) -> str:
    """A whole page: its head (title, style) and ``body``."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>")


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure(path: Path | None, caption: str) -> str:
    """A plot inlined into the page (nothing when it was not drawn)."""
    if path is None or not Path(path).is_file():
        return ""
    return f'<figure><img src="{data_uri(path)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def thumbnail(item: Any, side: int = 160) -> str:
    """An image example (HxWxC uint8) as an inlined PNG at most ``side`` pixels wide; a text as a snippet."""
    if isinstance(item, np.ndarray):
        from PIL import Image

        img = Image.fromarray(np.asarray(item, dtype=np.uint8).squeeze() if item.shape[-1] == 1 else item)
        img.thumbnail((side, side))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}" alt="example">'
    text = item if isinstance(item, str) else " / ".join(map(str, item))
    return f"<div>“{esc(text[:240])}{'…' if len(text) > 240 else ''}”</div>"


def kv(rows: dict[str, Any] | Iterable[tuple[str, Any]], *, raw_keys: bool = False) -> str:
    """A two-column table: a label per row (from the key unless ``raw_keys``) and its value in its unit."""
    items = rows.items() if isinstance(rows, dict) else rows
    cells = "".join(f"<tr><th>{esc(k if raw_keys else label(k))}</th><td>{esc(fmt(k, v))}</td></tr>" for k, v in items)
    return f"<table>{cells}</table>" if cells else ""


def grid(records: list[dict[str, Any]], columns: list[str], *, first: str | None = None) -> str:
    """Rows of records under labelled columns; numbers right-aligned; wide tables wrap inside the page."""
    columns = [c for c in columns if any(r.get(c) is not None for r in records)] or columns
    head = "".join(f"<th>{esc(label(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td{' class=num' if isinstance(r.get(c), (int, float, np.number)) and not isinstance(r.get(c), bool) else ''}>"
            f"{esc(fmt(c, r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in records)
    wide = ' class="wide"' if len(columns) > 7 else ""
    return f"<table{wide}><tr>{head}</tr>{body}</table>"


def cards(rows: dict[str, Any]) -> str:
    """The headline figures, large, first on the page."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{esc(fmt(k, v))}</div><div class="k">{esc(label(k))}</div></div>'
        for k, v in rows.items() if v is not None) + "</div>"


def folded(title: str, body: str, open_: bool = False) -> str:
    """A section a reader opens when they want it."""
    if not body.strip():
        return ""
    return f"<details{' open' if open_ else ''}><summary>{esc(title)}</summary>{body}</details>"


def tokens_html(tokens: list[str], scores: list[float]) -> str:
    """Tokens on a red (towards the class) / blue (away) scale, their scores on hover; padding left out."""
    m = max((abs(s) for s in scores), default=0.0) or 1.0
    spans = []
    for t, s in zip(tokens, scores):
        if t in ("[PAD]", "<pad>"):
            continue
        w = s / m
        colour = f"rgba(220,50,47,{w:.2f})" if w >= 0 else f"rgba(38,139,210,{-w:.2f})"
        spans.append(f'<span title="{s:+.4f}" style="background:{colour};padding:1px 2px;border-radius:3px">{esc(t)}</span>')
    return " ".join(spans)
