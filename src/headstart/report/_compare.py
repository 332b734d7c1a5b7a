"""The plot and page of `headstart compare`: accuracy against labels per class, one line per strategy."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ._choose import _grid
from ._mpl import subplots
from ._run import page_head


def plot_data_efficiency(df: Any, path: Path) -> Path:
    """Held-out accuracy vs labeled examples per class (log x), one line per strategy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = subplots(figsize=(6.4, 4.2))
    for strategy, part in df.groupby("strategy", sort=False):
        part = part.sort_values("labels_per_class")
        ax.plot(part["labels_per_class"], part["accuracy"], marker="o", label=strategy)
    ax.set_xscale("log")
    ticks = sorted(df["labels_per_class"].unique())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labeled examples per class")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("data efficiency: same seed, same held-out split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_compare_report(out_dir: Path, record: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    columns = ["strategy", "budget", "labels_per_class", "accuracy", "macro_f1", "wall_seconds", "train_seconds",
               "trainable_parameters", "trainable_percent", "samples_per_second"]
    options = ", ".join(f"{k}={v}" for k, v in record.get("options", {}).items()) or "defaults"
    page = f"""{page_head("headstart compare")}
<h1>Strategies on {html.escape(str(record['data']))}</h1>
<p>Each row is one run (same seed, same held-out split). Budget = labeled examples per class given to the
strategy (training + selection), <i>all</i> = every one. Fit options: {html.escape(options)}.
Trainable parameters as a percentage of the backbone's.</p>
<figure><img src="data_efficiency.png" alt="accuracy vs labels per class"></figure>
{_grid(rows, columns)}
<p>Each run's own report: <code>runs/&lt;strategy&gt;-&lt;budget&gt;/report.html</code>.</p>
</body></html>"""
    out = out_dir / "report.html"
    atomic_write_text(out, page)
    return out
