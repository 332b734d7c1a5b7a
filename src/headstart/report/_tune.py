"""The page of a `headstart tune` study: how the search went, what mattered, and whether it beat the default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ._html import cards, esc, figure, fmt, grid, kv, page
from ._mpl import subplots


def plot_history(trials: list[dict[str, Any]], path: Path, objective: str) -> Path:
    """Each finished trial's objective (lower is better) and the best so far; pruned trials at the top."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = subplots(figsize=(6.4, 3.8))
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    xs, ys = [t["number"] for t in done], [t["value"] for t in done]
    ax.scatter(xs, ys, s=18, label="finished trial")
    best, line = float("inf"), []
    for t in sorted(done, key=lambda t: t["number"]):
        best = min(best, t["value"])
        line.append((t["number"], best))
    if line:
        ax.step([a for a, _ in line], [b for _, b in line], where="post", color="C3", label="best so far")
    pruned = [t["number"] for t in trials if t["state"] == "PRUNED"]
    if pruned and ys:
        ax.scatter(pruned, [max(ys)] * len(pruned), marker="x", color="grey", label="pruned")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial", ylabel=objective.split(" (")[0], title="optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_importances(importances: dict[str, float], path: Path) -> Path | None:
    if not importances:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(importances)[::-1]
    fig, ax = subplots(figsize=(5.6, 0.5 + 0.45 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set(xlabel="share of the objective's variance (fANOVA)", title="parameter importances")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _configuration_row(name: str, r: dict[str, Any]) -> dict[str, Any]:
    test, val = r.get("test", {}), r.get("val", {})
    seeds = r.get("seeds")
    return {"configuration": name, "held_out": test.get("score"),
            "mean_over_seeds": f"{seeds['mean']:.4f} ± {seeds['std']:.4f} ({seeds['n']} seeds)" if seeds else None,
            "selection_log_loss": val.get("log_loss"), "wall_seconds": r.get("wall_seconds")}


def write_tune_report(folder: Path, record: dict[str, Any], data: str) -> Path:
    """``<folder>/report.html``."""
    trials = record["trials"]
    history = plot_history(trials, folder / "plots" / "history.png", record["objective"])
    imp = plot_importances(record.get("importances", {}), folder / "plots" / "importances.png")
    states = {s: sum(1 for t in trials if t["state"] == s) for s in ("COMPLETE", "PRUNED", "FAIL")}
    head = {"trials": len(trials), "best_objective": record["best"]["value"], "seconds": record.get("seconds")}
    compare = ""
    if "refit" in record and "default" in record:
        rows = [_configuration_row("best trial", record["refit"]), _configuration_row("default", record["default"])]
        name = str(record["refit"]["test"].get("score_name", "score")).replace("_", " ")
        compare = (f"<h2>Best against the default configuration</h2><p>Both fitted again on the same split and scored "
                   f"once on the reported split (held-out {esc(name)}); the search never saw it.</p>"
                   + grid(rows, ["configuration", "held_out", "mean_over_seeds", "selection_log_loss", "wall_seconds"]))
    params = [{"trial": t["number"], "state": t["state"].lower(), "objective": t["value"],
               "selection_score": t.get("selection_score"), "epochs_run": t.get("epochs_run"),
               "values": ", ".join(f"{k}={fmt('x', v)}" for k, v in t["params"].items())}
              for t in sorted(trials, key=lambda t: (t["value"] is None, t["value"] or 0.0))]
    body = f"""<h1>Tuning {esc(record['strategy'])} on {esc(data)}</h1>
<p class="lead">Study <code>{esc(record['study'])}</code> ({esc(record['storage'])}); backbone <code>{esc(record['model'])}</code>.
Objective: {esc(record['objective'])}. Pruning: {esc(record.get('pruning', 'none'))}.
{states['COMPLETE']} finished, {states['PRUNED']} pruned, {states['FAIL']} failed.</p>
{cards(head)}
{compare}
<h2>Best values</h2>{kv({k: v for k, v in record['best']['params'].items()}, raw_keys=True)}
<p>Reuse them: <code>headstart fit --config {esc(folder / 'best.yaml')}</code></p>
<h2>The search</h2>{figure(history, "optimisation history")}{figure(imp, "parameter importances")}
<h3>Every trial, best first</h3>{grid(params, ["trial", "state", "objective", "selection_score", "epochs_run", "values"])}"""
    out = folder / "report.html"
    atomic_write_text(out, page(f"headstart tune {record['study']}", body))
    return out
