"""Plots (learning curves, confusion matrix, reliability diagram) and the report of a run: one self-contained
HTML page, the headline figures first, then what explains them, the rest folded away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..targets import get_task_type
from ._card import reproduce, write_model_card
from ._html import cards, data_uri, esc, figure, fmt, folded, grid, kv, label, page, thumbnail, tokens_html
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
        for key, ax, name in (("loss", a1, "loss"), ("acc", a2, "accuracy (multilabel: exact match at 0.5)")):
            for split in ("train", "val"):
                vals = [r.get(f"{split}_{key}") for r in history]
                if any(v is not None for v in vals):
                    ax.plot(ep, [np.nan if v is None else v for v in vals], marker=".",
                            label="selection split" if split == "val" else split)
            ax.set(xlabel="epoch", ylabel=name, title=f"{name.split(' (')[0]} per epoch")
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


def plot_reliability(cal: dict[str, Any], path: Path) -> Path:
    """The reliability diagram of the held-out split: accuracy against confidence per bin, before and after the
    temperature fitted on the selection split; bar widths are the bins, the diagonal is perfect calibration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    sets = [("as fitted", cal, "#1f77b4")]
    if "temperature" in cal:
        sets.append((f"temperature {cal['temperature']['value']:.2f}", cal["temperature"], "#d95f02"))
    for name, part, color in sets:
        b = part["bins"]
        ax.plot([r["confidence"] for r in b], [r["accuracy"] for r in b], marker="o", color=color,
                label=f"{name} (ECE {100 * part['ece']:.1f}%)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top class)", ylabel="accuracy", title="reliability, held-out split")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def predicted_section(predicted: dict[str, Any] | None, test: dict[str, Any]) -> str:
    """What `headstart rank` predicted for this backbone next to what the fit obtained."""
    if not predicted:
        return ""
    rows = [("Rank among the candidates", f"{predicted['rank']} of {predicted['of']} (by {predicted['by']})"),
            *((f"Predicted {k}", fmt(k, v)) for k, v in predicted.get("scores", {}).items() if v is not None),
            (f"Obtained held-out {label(test.get('score_name', 'accuracy')).lower()}",
             fmt(test.get("score_name", "accuracy"), test.get("score"))),
            ("The ranking", predicted.get("ranking", ""))]
    return "<h2>What headstart rank predicted, and what was obtained</h2>" + kv(rows, raw_keys=True)


def strategy_sections(report: dict[str, Any] | None) -> str:
    """The strategy's own tables (``metrics.json["report"]["sections"]``), rendered without knowing the method."""
    out = []
    for sec in (report or {}).get("sections", []):
        head = "".join(f"<th>{esc(c)}</th>" for c in sec["columns"])
        rows = "".join("<tr>" + "".join(f"<td>{esc(fmt(str(c), v))}</td>" for c, v in zip(sec["columns"], row)) + "</tr>"
                       for row in sec["rows"])
        note = f"<p class=muted>{esc(sec['note'])}</p>" if sec.get("note") else ""
        out.append(f"<h3>{esc(sec['title'])}</h3><table>{'<tr>' + head + '</tr>'}{rows}</table>{note}")
    return "".join(out)


def per_name_section(test: dict[str, Any]) -> str:
    """Per class (precision, recall, F1, support), per label (with its threshold) or per target."""
    per = test.get("per_class") or test.get("per_label") or test.get("per_target")
    if not per:
        return ""
    what = ("class" if "per_class" in test else
            "label (thresholds chosen on the selection split)" if "per_label" in test else "target")
    cols = list(next(iter(per.values())))
    rows = [{"name": name, **v} for name, v in per.items()]
    return f"<h3>Per {esc(what)}</h3>" + grid(rows, ["name", *cols]).replace("<th>Name</th>", f"<th>{esc(what.split()[0])}</th>", 1)


def per_task_section(test: dict[str, Any]) -> str:
    """Several targets: each task's held-out metrics, the task's own headline figures."""
    out = []
    for name, m in test.get("tasks", {}).items():
        keys = ("n", *get_task_type(m["task"]).headline, "log_loss")
        out.append(f"<h3>Task {esc(name)} ({esc(m['task'])})</h3>{kv({k: m[k] for k in keys if k in m})}" + per_name_section(m))
    return "<h2>Held-out result per task</h2>" + "".join(out) if out else ""


def decided_rows(decided: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """What the reader chose about the data (columns, separator, header, task), how, and the flag to change it."""
    rows = []
    for what, d in decided.items():
        how = d["how"] + (f"; {d['flag']} to change" if d.get("flag") and d["how"] != "given" else "")
        rows.append((f"{what}{' column' if what in ('text', 'label', 'image') else ''}", f"{d['value']} ({how})"))
    return rows


def calibration_section(cal: dict[str, Any] | None, plot: Path | None) -> str:
    if not cal:
        return ""
    rows = [("Expected calibration error (held out)", f"{100 * cal['ece']:.1f}% over {cal['bins_count']} confidence bins"),
            ("Log-loss (held out)", f"{cal['log_loss']:.4f}")]
    t = cal.get("temperature")
    if t:
        rows += [("Temperature that would fix it", f"{t['value']:.3f}, fitted on the {t['fitted_on']}"),
                 ("With it: ECE, log-loss (held out)", f"{100 * t['ece']:.1f}%, {t['log_loss']:.4f}")]
        advice = ("above 1: the model is over-confident; its probabilities are sharper than its accuracy" if t["value"] > 1.05
                  else "below 1: the model is under-confident" if t["value"] < 0.95 else "close to 1: already calibrated")
        rows.append(("Reading", advice))
    else:
        rows.append(("Temperature", "not fitted: the run has no selection split to fit it on"))
    return ("<h2>Calibration</h2><p>Are the probabilities honest? Among answers given with 80% confidence, about 80% "
            "should be right. The model is not changed; the temperature is what scaling its logits would need.</p>"
            + kv(rows, raw_keys=True) + figure(plot, "reliability diagram (held-out split)"))


def mistakes_section(test: dict[str, Any], examples: dict[str, Any], run_dir: Path) -> str:
    """The most confused pairs and the most confidently wrong held-out examples, with thumbnails or snippets, and
    for the mistakes an explanation of the class the model chose (`run.explain`) when the fit made one."""
    pairs, wrong = test.get("confused_pairs") or [], test.get("confidently_wrong") or []
    if not pairs and not wrong:
        return ""

    def card(ref: str, caption: str, why: dict[str, Any] | None = None) -> str:
        shown, wide = (thumbnail(examples[ref]) if ref in examples else ""), False
        if why and why.get("png") and (run_dir / why["png"]).is_file():
            shown, wide = f'<img src="{data_uri(run_dir / why["png"])}" alt="why: {esc(why["method"])}">', True
        elif why and why.get("tokens"):
            shown += f"<div>{tokens_html(why['tokens'], why['scores'])}</div>"
        short = "/".join(Path(ref).parts[-2:]) if "/" in ref else ref  # the class folder and the file; all on hover
        return (f'<div class="ex{" wide" if wide else ""}">{shown}<div>{esc(caption)}</div>'
                f'<div class="muted" title="{esc(ref)}">{esc(short)}</div></div>')

    out = ["<h2>Mistakes</h2>"]
    if pairs:
        out.append("<h3>Most confused pairs (held-out split)</h3>")
        for p in pairs:
            out.append(f"<p><b>{esc(p['true'])}</b> taken for <b>{esc(p['predicted'])}</b>: {p['count']} time"
                       f"{'s' if p['count'] != 1 else ''}</p><div class=examples>"
                       + "".join(card(r, "") for r in p.get("refs", [])) + "</div>")
    if wrong:
        explained = next((w["explanation"]["method"] for w in wrong if w.get("explanation")), None)
        out.append("<h3>Most confidently wrong (held-out split)</h3>"
                   + (f"<p class=muted>Shown: the evidence for the class the model chose ({esc(explained)}; red = "
                      "towards it).</p>" if explained else "") + "<div class=examples>" + "".join(
            card(w["ref"], f"true {w['true']}, predicted {w['predicted']} at {100 * w['confidence']:.0f}%",
                 w.get("explanation")) for w in wrong) + "</div>")
    return "".join(out)


def data_section(data: dict[str, Any]) -> str:
    """Split sizes, class balance per split, image sizes or text lengths, what the reader decided and skipped."""
    out = ["<h2>Data</h2>", kv({k: data.get(k) for k in ("n_train", "n_val", "n_test")})]
    st = data.get("stats") or {}
    if st.get("balance"):
        rows = [{"class": c, **v} for c, v in st["balance"].items()]
        out.append("<h3>Examples per class and split</h3>" + grid(rows, ["class", "train", "selection", "held_out"]))
    for key, title in (("image_size", "Image sizes (pixels, as read)"), ("text_words", "Text lengths (words)")):
        if st.get(key):
            out.append(f"<h3>{esc(title)}</h3>" + grid(st[key], list(st[key][0])))
    leak = data.get("leakage") or {}
    if leak.get("exact") or leak.get("near"):
        what = ("their training copies were dropped (--dedupe)" if leak.get("dropped") else
                "the held-out figure is flattered by them; --dedupe drops the training copies")
        rows = [{"held_out": g["held_out"], "training": ", ".join(g["training"]), "copies": g["copies"], "match": g["match"]}
                for g in leak.get("groups", [])]
        out.append(f"<h3>Copies across the splits: {leak['exact']} exact, {leak['near']} near</h3>"
                   f"<p>Reported examples with a copy on the training side: {esc(what)}.</p>"
                   + grid(rows, ["held_out", "training", "copies", "match"]))
    elif leak:
        out.append("<p class=muted>No copy of a reported example on the training side (exact or near).</p>")
    decided = decided_rows(data.get("decided", {}))
    if decided:
        out.append(folded("What was decided about the data", kv(decided, raw_keys=True)))
    skipped = data.get("skipped_files") or data.get("skipped_rows")
    if isinstance(skipped, list) and skipped:
        out.append(folded(f"Skipped ({len(skipped)})", grid(skipped[:200], ["where", "reason"])))
    return "".join(out)


def write_report(run_dir: Path, config: dict[str, Any], metrics: dict[str, Any], data_summary: dict[str, Any],
                 examples: dict[str, Any] | None = None) -> Path:
    """report.html: what was fitted, on what, how well, why (calibration, mistakes), and how to fit it again; and
    the run's model card, README.md (`report._card`).

    ``examples``: where an example came from -> the example, for the thumbnails of the mistakes section."""
    test = metrics.get("test", {})
    task = data_summary.get("task") or "multiclass"
    keys = ("score", "n") if task == "multitask" else (*get_task_type(task).headline, "n")
    head = {k: test[k] for k in keys if k in test}
    fit = metrics.get("fit", {})
    name = run_dir.name
    what = (f"{esc(config.get('strategy'))} of <code>{esc(config.get('model'))}</code> on <b>{esc(data_summary.get('name'))}</b> "
            f"({esc(data_summary.get('modality'))}, {esc(task)}, {len(data_summary.get('classes', []))} "
            f"{'classes' if task in ('binary', 'multiclass') else 'names'})")
    plots = run_dir / "plots"
    curves = figure(plots / "learning_curves.png", "learning curves")
    confusion = "".join(figure(p, p.stem.replace("_", " ")) for p in sorted(plots.glob("confusion_matrix*.png")))
    cal_plot = plots / "reliability.png" if (plots / "reliability.png").is_file() else None
    selection = metrics.get("val", {})
    summary_rows = [(str(k), v) for k, v in metrics.get("report", {}).get("summary", [])]
    fit_rows = {k: v for k, v in fit.items() if not isinstance(v, (dict, list)) and k not in ("strategy", "model")}
    setup = {k: config.get(k) for k in ("model", "strategy", "epochs", "lr", "batch_size", "seed", "augment", "freeze")
             if config.get(k) is not None}
    body = f"""<h1>{esc(name)}</h1>
<p class="lead">{what}. Held-out figures are on the reported split only: epochs, thresholds and every other choice
were made on a selection split carved from the training data.</p>
{cards(head) if head else '<p>No held-out split was scored.</p>'}
{per_name_section(test)}
{per_task_section(test)}
{"<h2>Training</h2>" + curves + confusion if curves or confusion else ""}
{calibration_section(metrics.get("calibration"), cal_plot)}
{mistakes_section(test, examples or {}, run_dir)}
{predicted_section(metrics.get("predicted"), test)}
{"<h2>Method</h2>" + kv(summary_rows, raw_keys=True) + strategy_sections(metrics.get("report")) if summary_rows or metrics.get("report", {}).get("sections") else ""}
{data_section(data_summary)}
<h2>Reproduce</h2><pre><code>{esc(reproduce(config))}</code></pre>
{folded("Set-up", kv(setup))}
{folded("Selection split (what choices were made on)", kv({k: selection[k] for k in keys + ("log_loss",) if k in selection}))}
{folded("Fit details (time, throughput, hardware use)", kv(fit_rows))}
{folded("Every held-out figure", kv({k: v for k, v in test.items() if not isinstance(v, (dict, list))}))}"""
    out = run_dir / "report.html"
    from .._io import atomic_write_text

    atomic_write_text(out, page(f"headstart run {name}", body))
    write_model_card(run_dir, config, metrics, data_summary)
    return out
