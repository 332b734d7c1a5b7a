"""The plots and pages of `headstart compare` (accuracy against labels per class, one line per strategy) and
`headstart fewshot` (meta-test accuracy with 95% intervals, one bar per method and shot count)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ._html import esc, figure, grid, page
from ._mpl import subplots


def plot_data_efficiency(df: Any, path: Path) -> Path:
    """Held-out score (accuracy; micro-F1 multilabel; R² regression) vs labeled examples per class (log x), one
    line per strategy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = subplots(figsize=(6.4, 4.2))
    key = "score" if "score" in df and df["score"].notna().all() else "accuracy"
    for i, (strategy, part) in enumerate(df.groupby("strategy", sort=False)):
        part = part.sort_values("labels_per_class")
        color = f"C{i % 10}"
        if "seeds_mean" in part and part["seeds_mean"].notna().all():  # the mean over seeds, ± their std
            ax.errorbar(part["labels_per_class"], part["seeds_mean"], yerr=part["seeds_std"], marker="o", capsize=3,
                        color=color, label=f"{strategy} (mean of seeds ± std)")
        else:
            ax.plot(part["labels_per_class"], part[key], marker="o", color=color, label=strategy)
        if "cv_mean" in part and part["cv_mean"].notna().all():  # cross-validated on the training part
            ax.errorbar(part["labels_per_class"], part["cv_mean"], yerr=part["cv_std"], marker="s", ls="--", capsize=3,
                        color=color, alpha=0.7, label=f"{strategy} (CV mean ± std)")
    ax.set_xscale("log")
    ticks = sorted(df["labels_per_class"].unique())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labeled examples per class")
    ax.set_ylabel(f"held-out {str(df['score_name'].iloc[0]).replace('_', ' ') if key == 'score' else 'accuracy'}")
    ax.set_title("data efficiency: same seed, same held-out split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_compare_report(out_dir: Path, record: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    columns = ["strategy", "budget", "labels_per_class", "score", "cv_mean", "cv_std", "cv_ci95", "seeds_mean", "seeds_std",
               "accuracy", "macro_f1", "wall_seconds", "train_seconds", "trainable_parameters", "trainable_percent",
               "samples_per_second"]
    options = ", ".join(f"{k}={v}" for k, v in record.get("options", {}).items()) or "defaults"
    name = str(rows[0].get("score_name", "score")).replace("_", " ") if rows else "score"
    body = f"""<h1>Strategies on {esc(record['data'])}</h1>
<p class="lead">Each row is one run (same seed, same held-out split); the score is the held-out {esc(name)}. Budget =
labeled examples per class given to the strategy (training + selection), <i>all</i> = every one. Fit options:
{esc(options)}. Trainable parameters as a percentage of the backbone's.</p>
{figure(out_dir / "data_efficiency.png", "held-out score against labels per class")}
{grid(rows, columns)}
<p class="muted">Each run's own report: <code>runs/&lt;strategy&gt;-&lt;budget&gt;/report.html</code>.</p>"""
    out = out_dir / "report.html"
    atomic_write_text(out, page("headstart compare", body))
    return out


def plot_fewshot(rows: list[dict[str, Any]], path: Path, ways: int) -> Path:
    """Meta-test accuracy per method, one group of bars per shot count, 95% intervals as error bars."""
    path.parent.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    shots = sorted({r["shots"] for r in rows})
    fig, ax = subplots(figsize=(6.8, 4.2))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        got = {r["shots"]: r for r in rows if r["method"] == m}
        xs = [j + (i - (len(methods) - 1) / 2) * width for j, k in enumerate(shots) if k in got]
        ax.bar(xs, [got[k]["accuracy"] for k in shots if k in got], width, yerr=[got[k]["ci95"] for k in shots if k in got],
               capsize=3, label=m)
    ax.axhline(1.0 / ways, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xticks(range(len(shots)), [f"{ways}-way {k}-shot" for k in shots])
    ax.set_ylabel("meta-test accuracy (95% interval)")
    ax.set_ylim(0, 1)
    ax.set_title("few-shot: the same episodes for every method")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_fewshot_report(out_dir: Path, record: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    split = record.get("classes", {})
    classes = "".join(f"<li>meta-{esc(k)} ({len(v)}): {esc(', '.join(v) or '(none)')}</li>"
                      for k, v in split.items())
    body = f"""<h1>Few-shot on {esc(record['data'])}</h1>
<p>{record['episodes']} meta-test episodes per shot count, {record['ways']}-way, up to {record['queries']} queries per
class; every method is scored on the same episodes, of classes no trained method saw. Accuracy is the mean over
episodes, ± the half-width of its 95% interval. <i>prototypes</i> and <i>linear</i> use the pretrained backbone's
features without any training: the baselines every meta-learning result is read against.</p>
{figure(out_dir / "fewshot.png", "meta-test accuracy per method")}
{grid(rows, ["method", "shots", "accuracy", "ci95", "episodes", "wall_seconds", "train_seconds", "score_seconds"])}
<ul>{classes}</ul>
<p class="muted">Each trained method's run: <code>runs/&lt;method&gt;-&lt;K&gt;shot/report.html</code>.</p>"""
    out = out_dir / "report.html"
    atomic_write_text(out, page("headstart fewshot", body))
    return out
