"""Plots and pages of the "choose" commands: `headstart rank` and `headstart distance`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from ._mpl import subplots
from ._html import esc, figure, fmt, grid, page


def plot_rank(df: Any, metrics: list[str], path: Path) -> Path:
    """One horizontal bar chart per metric, candidates in ranked order, the recommended one highlighted."""
    shown = [m for m in metrics if m in df.columns and df[m].notna().any()]
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 0.5 * len(df) * rows + 1.6 * rows), squeeze=False)
    names = list(df.index)[::-1]
    best = df.attrs.get("recommended")
    for ax, m in zip(axes.flat, shown):
        vals = df[m].to_numpy(dtype=float)[::-1]
        colors = ["#d95f02" if n == best else "#7570b3" for n in names]
        ax.barh(range(len(names)), np.nan_to_num(vals, nan=0.0), color=colors)
        if m == df.attrs.get("by") and "low" in df.columns and df["low"].notna().any():  # the 90% interval
            lo, hi = df["low"].to_numpy(dtype=float)[::-1], df["high"].to_numpy(dtype=float)[::-1]
            ax.errorbar(vals, range(len(names)), xerr=[np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)], fmt="none",
                        ecolor="black", capsize=3, lw=1)
        for i, v in enumerate(vals):
            ax.text(0, i, " n/a" if np.isnan(v) else f" {v:.3f}", va="center", fontsize=8)
        ax.set_yticks(range(len(names)), [n if len(n) <= 36 else "…" + n[-35:] for n in names], fontsize=8)
        ax.set_title(m + (" (recommends)" if m == df.attrs.get("by") else ""), fontsize=10)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle("transferability of each candidate (higher is better)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_rank_report(out_dir: Path, payload: dict[str, Any]) -> Path:
    metrics = payload["metrics"]
    spread = any(c.get("low") is not None for c in payload["candidates"])
    columns = ["rank", "candidate", *metrics, *(["low", "high"] if spread else []), "dim", "params", "extract_s", "score_s",
               *(["proxy_s"] if "proxy" in metrics else [])]
    note = (f"<p>low, high: the 90% half-sample bootstrap interval of {esc(payload['by'])}.</p>" if spread else "") + \
        (f"<p class=\"lead\"><b>{esc(payload['overlap'])}</b></p>" if payload.get("overlap") else "")
    helps = "".join(f"<li><b>{esc(m)}</b>: {esc(h)}</li>" for m, h in payload["metric_help"].items())
    body = f"""<h1>Which backbone for {esc(payload['data'])}?</h1>
<p class="lead">Recommended: <b>{esc(payload['recommended'])}</b>, by <b>{esc(payload['by'])}</b>
(goal: {esc(payload['goal'])}). Scored on {payload['n_examples']:,} training examples (the reported split is not used);
{payload['seconds']:.1f} s in all.</p>
{grid(payload['candidates'], columns)}
{note}
<ul>{helps}</ul>
{figure(out_dir / "rank.png", "scores per candidate")}"""
    out = out_dir / "report.html"
    atomic_write_text(out, page("headstart rank", body))
    return out


def plot_domains(source: np.ndarray, target: np.ndarray, names: tuple[str, str], path: Path, seed: int = 0,
                 max_points: int = 1000) -> Path:
    """Both domains in 2-D: PCA (linear, global) and t-SNE (local neighbourhoods), side by side."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    s = source[rng.choice(len(source), min(len(source), max_points), replace=False)]
    t = target[rng.choice(len(target), min(len(target), max_points), replace=False)]
    x = StandardScaler().fit_transform(np.concatenate([s, t]).astype(np.float64))
    dom = np.r_[np.zeros(len(s), int), np.ones(len(t), int)]
    views = [("PCA", PCA(2, random_state=seed).fit_transform(x))]
    if len(x) > 10:
        x50 = PCA(min(50, x.shape[1], len(x) - 1), random_state=seed).fit_transform(x)
        views.append(("t-SNE", TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed, init="pca").fit_transform(x50)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = subplots(1, len(views), figsize=(5.2 * len(views), 4.6), squeeze=False)
    for ax, (title, z) in zip(axes.flat, views):
        for d, color in ((0, "#1b9e77"), (1, "#d95f02")):
            ax.scatter(z[dom == d, 0], z[dom == d, 1], s=6, alpha=0.5, color=color, label=f"{names[d]} ({(dom == d).sum()})")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_distance_report(out_dir: Path, payload: dict[str, Any]) -> Path:
    rows = "".join(f"<tr><th>{esc(k)}</th><td class=num>{esc(fmt(k, v))}</td><td>{esc(payload['help'][k])}</td></tr>"
                   for k, v in payload["distances"].items())
    body = f"""<h1>{esc(payload['source'])} vs {esc(payload['target'])}</h1>
<p class="lead">In the feature space of <b>{esc(payload['model'])}</b> ({payload['n_source']:,} vs {payload['n_target']:,} examples).</p>
<table><tr><th>Measure</th><th>Value</th><th>Meaning</th></tr>{rows}</table>
{figure(out_dir / "domains.png", "both domains in 2-D")}"""
    out = out_dir / "report.html"
    atomic_write_text(out, page("headstart distance", body))
    return out
