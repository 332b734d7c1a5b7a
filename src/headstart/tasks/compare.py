"""`compare`: several strategies at several label budgets, same seed and splits, one table and one plot.

Each (strategy, budget) pair is an ordinary `fit` into ``<out>/runs/<strategy>-<budget>``
with ``labels_per_class = budget`` (``all`` = every training example). The
reported split depends only on the seed, so every run is scored on the same
held-out examples. The folder is written as it goes (``compare.csv`` after every
run); ``--resume`` reuses finished runs and resumes an interrupted one from its
checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write_text, prepare_output_dir
from .._progress import info
from .._trust import trusting
from ..config import FitConfig
from ..errors import ConfigError, DataError, HeadstartError, did_you_mean
from ..run import load_run
from ..training.strategies import get_strategy, list_strategies, option_fields, options_for
from .fit import fit

if TYPE_CHECKING:  # imported where used: commands that do not need pandas do not pay for it
    import pandas as pd


def parse_budgets(text: str | list[Any]) -> list[int | None]:
    """``"5,20,all"`` -> [5, 20, None] (None = all labels)."""
    parts = [str(p).strip() for p in (text.split(",") if isinstance(text, str) else text) if str(p).strip()]
    out: list[int | None] = []
    for p in parts:
        if p.lower() == "all":
            out.append(None)
        elif p.isdigit() and int(p) >= 1:
            out.append(int(p))
        else:
            raise ConfigError(f"option --budgets: {p!r} is not a number of labels per class (>= 1) or 'all'")
    if not out:
        raise ConfigError("option --budgets: give at least one budget, e.g. 5,20,all")
    return out


def parse_strategies(text: str | list[str]) -> list[str]:
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    known = list_strategies()
    for s in names:
        if s not in known:
            raise ConfigError(f"option --strategies: {s!r} is unknown; {did_you_mean(s, known)}choose from {', '.join(known)}")
    if not names:
        raise ConfigError(f"option --strategies: give at least one of {', '.join(list_strategies())}")
    return names


def options_applying(strategy: str, fit_options: dict[str, Any]) -> dict[str, Any]:
    """The fit options that apply to ``strategy`` (another strategy's own options are left out)."""
    owners = option_fields()
    return {k: v for k, v in fit_options.items() if k not in owners or strategy in owners[k][1]}


def default_strategies() -> str:
    """The strategies `headstart compare` runs when none are named (each strategy says whether it is one)."""
    return ",".join(s for s in list_strategies() if get_strategy(s).compared_by_default)


def default_out(data: str) -> Path:
    return Path("runs") / f"compare-{Path(str(data).rstrip('/')).stem or 'data'}"


def compare(data: str, strategies: str | list[str] | None = None, budgets: str | list[Any] = "5,20,all", *, out: str | Path | None = None,
            overwrite: bool = False, resume: bool = False, trust_code: bool | str | None = None,
            **fit_options: Any) -> pd.DataFrame:
    """Fit every strategy at every label budget, with the same seed and held-out split.

    Writes a folder (``out``, default ``runs/compare-<data>``) with ``runs/``, ``compare.csv``, the
    data-efficiency plot ``data_efficiency.png`` and ``report.html``.

    Args:
        data: As in `fit`.
        strategies: Comma-separated names or a list (default: those marked for comparison in `list_strategies`).
        budgets: Labeled examples per class, comma-separated or a list; ``"all"`` is every training example.
        out: The comparison's folder.
        overwrite: Replace an existing comparison folder.
        resume: Continue an interrupted comparison: finished runs are reused.
        trust_code: As in `fit`; a finished run that ``resume`` reuses is loaded under it too.
        **fit_options: `FitConfig` fields and strategy options shared by all runs (``model``, ``epochs``,
            ``test``, ``lora_r`` ...); ``out``, ``strategy``, ``labels_per_class`` and ``data`` are set per run.

    Returns:
        A pandas DataFrame, one row per run: strategy, budget, labels per class, the held-out score, accuracy,
        macro F1, wall and training seconds, trainable parameters, and the spread over seeds or folds when asked.

    Examples:
        >>> import headstart
        >>> table = headstart.compare("demo-text", "linear", "2,all", model="minilm", out="runs/compare")
        >>> table[["strategy", "budget"]].values.tolist()
        [['linear', 2], ['linear', 'all']]
    """
    from ..report import plot_data_efficiency, write_compare_report

    names = parse_strategies(strategies if strategies is not None else default_strategies())
    wanted = parse_budgets(budgets)
    for k in ("out", "strategy", "labels_per_class", "data", "resume", "overwrite", "name"):
        if k in fit_options:
            raise ConfigError(f"compare: option {k} is set per run; drop it")
    for k in ("devices", "num_nodes"):  # a distributed fit re-runs the command in each process: one fit at a time
        if fit_options.get(k, 1) != 1:
            raise ConfigError(f"compare: option --{k.replace('_', '-')} applies to one `headstart fit`; compare runs its "
                              "fits one after another in this process")
    for s in names:  # every option checked before the first fit
        options_for(FitConfig.from_dict({"data": str(data), "strategy": s, **options_applying(s, fit_options)}))
    folder = prepare_output_dir(out or default_out(str(data)), overwrite=overwrite, resume=resume,
                                markers=("compare.json",), what="a headstart comparison", options="--out")
    rows: list[dict[str, Any]] = []
    record = {"data": str(data), "strategies": names, "budgets": ["all" if b is None else b for b in wanted],
              "options": json.loads(json.dumps(fit_options, default=str)), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    _check_same_comparison(folder / "compare.json", record)
    atomic_write_text(folder / "compare.json", json.dumps(record, indent=2, default=str))
    for budget in wanted:
        for s in names:
            tag = f"{s}-{'all' if budget is None else budget}"
            run_dir = folder / "runs" / tag
            info(f"compare: {tag}")
            with trusting(trust_code):
                run = _fit_or_reuse(data, run_dir, s, budget, options_applying(s, fit_options))
            rows.append(_row(run, s, budget))
            _write(folder, record, rows)
    import pandas as pd

    df = pd.DataFrame(rows)
    plot_data_efficiency(df, folder / "data_efficiency.png")
    write_compare_report(folder, record, rows)
    return df


def _check_same_comparison(path: Path, record: dict[str, Any]) -> None:
    """A resumed comparison reuses finished runs: only if they were fitted on the same data with the same options."""
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise HeadstartError(f"{path}: unreadable; start the comparison again with --overwrite") from None
    for key in ("data", "options"):
        if before.get(key) != record[key]:
            raise HeadstartError(f"{path.parent}: this comparison was started with {key} {before.get(key)!r}, not "
                                 f"{record[key]!r}; its runs cannot be reused: choose another --out or pass --overwrite")


def _fit_or_reuse(data: str, run_dir: Path, strategy: str, budget: int | None, options: dict[str, Any]) -> Any:
    if (run_dir / "metrics.json").is_file():
        return load_run(run_dir)  # finished in an earlier, interrupted `compare`
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    try:
        return fit(data, strategy=strategy, labels_per_class=budget, out=str(run_dir), overwrite=not resume, resume=resume,
                   **options)
    except DataError as e:
        if str(e).startswith("option --labels-per-class"):  # a budget per class, for a target without classes
            raise ConfigError(f"option --budgets: {budget} labels per class: {data} is a regression target, without "
                              "classes; give --budgets all") from None
        raise


def _row(run: Any, strategy: str, budget: int | None) -> dict[str, Any]:
    m = run.metrics
    f, d, test = m.get("fit", {}), m.get("data", {}), m.get("test", {})
    classes = max(1, len(run.classes))
    n_train = int(d.get("n_train", 0)) + int(d.get("n_val", 0))  # the labeled examples the strategy was given
    trainable = f.get("trainable_parameters")
    if trainable is None:  # no gradient loop (a cached-feature probe): only the head was fitted
        trainable = sum(p.numel() for p in run.head.parameters())
    backbone = f.get("backbone_parameters") or sum(p.numel() for p in run.backbone.parameters())
    return {
        "strategy": strategy, "budget": "all" if budget is None else budget,
        "labels_per_class": round(n_train / classes, 1), "n_labeled": n_train,
        "score": test.get("score"), "score_name": test.get("score_name", "accuracy"),
        "accuracy": test.get("accuracy"), "macro_f1": test.get("macro_f1"), "log_loss": test.get("log_loss"),
        "wall_seconds": f.get("wall_seconds"), "train_seconds": f.get("train_seconds"),
        "trainable_parameters": int(trainable), "backbone_parameters": int(backbone),
        "trainable_percent": round(100.0 * trainable / max(1, backbone), 3),
        "samples_per_second": f.get("samples_per_second"), "run": str(run.path),
        **_spread_columns(m),
    }


def _spread_columns(m: dict[str, Any]) -> dict[str, Any]:
    """With --cv: the folds' mean score, its std and 95% interval; with --seeds: the held-out score's mean and
    std over the seeds (the row's ``score`` is the kept seed's)."""
    out: dict[str, Any] = {}
    cv = m.get("cv", {}).get("figures", {}).get("score")
    if cv:
        out.update(cv_mean=cv["mean"], cv_std=cv["std"], cv_ci95=f"{cv['ci95_low']:.4f} to {cv['ci95_high']:.4f}")
    sd = m.get("seeds", {}).get("spread", {}).get("test_score")
    if sd:
        out.update(seeds_mean=sd["mean"], seeds_std=sd["std"])
    return out


def _write(folder: Path, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    atomic_write_text(folder / "compare.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_write_text(folder / "compare.json", json.dumps({**record, "rows": rows}, indent=2, default=str))


__all__ = ["compare", "default_out", "default_strategies", "options_applying", "parse_budgets", "parse_strategies"]
