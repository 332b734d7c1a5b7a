"""Plots (learning curves, confusion matrix) and the short HTML report of a run."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from ..targets import get_task_type
from ._mpl import subplots


def plot_learning_curves(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Loss and accuracy per epoch; for a history of regularisation strengths (rows with ``C``), the
    cross-validated log-loss per C."""
    if not history:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    if "C" in history[0]:
        fig, ax = subplots(figsize=(5, 3.5))
        cs = [r["C"] for r in history]
        ax.semilogx(cs, [r["cv_log_loss"] for r in history], marker="o")
        best = min(history, key=lambda r: r["cv_log_loss"])
        ax.axvline(best["C"], color="gray", ls="--", lw=1, label=f"chosen C={best['C']:.3g}")
        ax.set(xlabel="C (inverse L2 strength)", ylabel="cross-validated log-loss", title="linear head: choice of C")
        ax.legend()
    else:
        fig, (a1, a2) = subplots(1, 2, figsize=(9, 3.5))
        ep = [r["epoch"] for r in history]
        for key, ax in (("loss", a1), ("acc", a2)):
            for split in ("train", "val"):
                vals = [r.get(f"{split}_{key}") for r in history]
                if any(v is not None for v in vals):
                    ax.plot(ep, [np.nan if v is None else v for v in vals], marker=".",
                            label="selection split" if split == "val" else split)
            ax.set(xlabel="epoch", ylabel=key, title=f"{key} per epoch")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_confusion(cm: list[list[int]], classes: list[str], path: Path, title: str = "confusion matrix") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.asarray(cm)
    n = len(classes)
    size = min(12, 2.5 + 0.5 * n)
    fig, ax = subplots(figsize=(size, size * 0.85))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def page_head(title: str) -> str:
    """The shared <head> and style of every headstart HTML page."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:64em;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}
th{{background:#f4f4f4}}img{{max-width:100%}}figure{{display:inline-block;margin:.5em}}</style></head><body>"""


def predicted_section(predicted: dict[str, Any] | None, test: dict[str, Any]) -> str:
    """What `headstart rank` predicted for this backbone next to what the fit obtained."""
    if not predicted:
        return ""
    rows = {"rank among candidates": f"{predicted['rank']} of {predicted['of']} (by {predicted['by']})",
            **{f"predicted {k}": v for k, v in predicted.get("scores", {}).items() if v is not None},
            f"obtained held-out {test.get('score_name', 'accuracy')}": test.get("score", test.get("accuracy", "n/a")), "ranking": predicted.get("ranking", "")}
    return f"<h2>Predicted (headstart rank) vs obtained</h2>{_table(rows)}"


def strategy_sections(report: dict[str, Any] | None) -> str:
    """The strategy's own tables (``metrics.json["report"]["sections"]``), rendered without knowing the method."""
    out = []
    for sec in (report or {}).get("sections", []):
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in sec["columns"])
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in sec["rows"])
        note = f"<p>{html.escape(sec['note'])}</p>" if sec.get("note") else ""
        out.append(f"<h2>{html.escape(sec['title'])}</h2><table><tr>{head}</tr>{rows}</table>{note}")
    return "".join(out)


def per_name_section(test: dict[str, Any]) -> str:
    """A multilabel run's figures per label (with its threshold), a multi-target regression's per target."""
    per = test.get("per_label") or test.get("per_target")
    if not per:
        return ""
    cols = list(next(iter(per.values())))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *cols])
    rows = "".join("<tr>" + f"<th>{html.escape(name)}</th>" + "".join(f"<td>{html.escape(_fmt(v[c]))}</td>" for c in cols)
                   + "</tr>" for name, v in per.items())
    what = "label (thresholds chosen on the selection split)" if "per_label" in test else "target"
    return f"<h2>Held-out result per {what}</h2><table><tr>{head}</tr>{rows}</table>"


def per_task_section(test: dict[str, Any]) -> str:
    """Several targets: each task's held-out metrics, the task's own headline figures."""
    out = []
    for name, m in test.get("tasks", {}).items():
        keys = ("n", *get_task_type(m["task"]).headline, "log_loss")
        out.append(f"<h3>Task {html.escape(name)} ({html.escape(m['task'])})</h3>{_table({k: m[k] for k in keys if k in m})}"
                   + per_name_section(m))
    return "<h2>Held-out result per task</h2>" + "".join(out) if out else ""


def decided_rows(decided: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """What the reader chose about the data (columns, separator, header, task), how, and the flag to change it."""
    rows = []
    for what, d in decided.items():
        how = d["how"] + (f"; {d['flag']} to change" if d.get("flag") and d["how"] != "given" else "")
        rows.append((f"{what}{' column' if what in ('text', 'label', 'image') else ''}", f"{d['value']} ({how})"))
    return rows


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_report(run_dir: Path, config: dict[str, Any], metrics: dict[str, Any], data_summary: dict[str, Any]) -> Path:
    """report.html: what was fitted, on what, how well, with the plots."""
    test = metrics.get("test", {})
    task = data_summary.get("task") or "multiclass"
    keys = ("n", "score", "log_loss") if task == "multitask" else ("n", *get_task_type(task).headline, "log_loss")
    headline = {k: test[k] for k in keys if k in test}
    setup = {k: config.get(k) for k in ("data", "model", "strategy", "epochs", "lr", "batch_size", "seed", "augment")}
    fit = {k: v for k, v in metrics.get("fit", {}).items() if not isinstance(v, (dict, list))}
    data = {k: v for k, v in data_summary.items() if not isinstance(v, (dict, list))}
    plots = "".join(
        f'<figure><img src="plots/{p.name}" alt="{p.stem}"><figcaption>{p.stem.replace("_", " ")}</figcaption></figure>'
        for p in sorted((run_dir / "plots").glob("*.png"))
    )
    page = f"""{page_head(f"headstart run {run_dir.name}")}
<h1>headstart run: {html.escape(run_dir.name)}</h1>
<p>Held-out results are on the reported split only; epochs and hyper-parameters were chosen on a separate
selection split carved from the training data.</p>
<h2>Held-out result</h2>{_table(headline)}
{per_name_section(test)}
{per_task_section(test)}
{predicted_section(metrics.get("predicted"), test)}
{strategy_sections(metrics.get("report"))}
<h2>Set-up</h2>{_table(setup)}
<h2>Data</h2>{_table(data)}
<h3>What was decided about the data</h3>{_table(dict(decided_rows(data_summary.get("decided", {}))))}
<h2>Fit</h2>{_table(fit)}
<h2>Plots</h2>{plots}
</body></html>"""
    out = run_dir / "report.html"
    from .._io import atomic_write_text

    atomic_write_text(out, page)
    return out
