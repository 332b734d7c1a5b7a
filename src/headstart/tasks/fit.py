"""The fit pipeline: the one function that owns the order of every fit.

::

    load data -> build the backbone -> resolve the configuration (once) -> strategy.prepare(ctx)
      -> engine.train(strategy, ctx) when the strategy trains -> strategy.cleanup(ctx)
      -> the task's decisions on the selection split -> strategy.finish(ctx) -> evaluate -> write the run directory

`fit` (library and CLI), `compare` (one fit per strategy and budget), the
``distill`` strategy and `rank`'s fine-tuning proxy all go through `run_pipeline`.
Every hook of the strategy receives the same `FitContext`; the engine sees the
strategy only through the `Trainable` protocol.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._dist import global_rank
from .._io import prepare_output_dir
from .._progress import info
from .._trust import at_least, trusting
from ..backbones import build_backbone, preflight
from ..config import FitConfig
from ..data import Dataset
from ..errors import ConfigError, HeadstartError, kind_of
from ..report import decided_rows, plot_confusion, plot_learning_curves, plot_reliability, write_report
from ..targets import get_task_type
from ..training.loggers import log_run, make_loggers
from ..training.strategies import FitContext, Outcome, Strategy, get_strategy, options_for
from .rank_index import predicted_for

if TYPE_CHECKING:
    from ..backbones import Backbone
    from ..run import Run

# torch, the heads, features and the run format are imported inside the steps that use them: a fit whose data
# or options are wrong, or whose hub weights cannot be had, says so before paying for torch.


def as_config(data: Any, config: FitConfig | str | Path | dict | None, overrides: dict[str, Any]) -> FitConfig:
    """One `FitConfig` from a config (object, dict or YAML file) and keyword overrides (flat keys)."""
    if isinstance(config, FitConfig):
        base = config.to_dict()
    elif isinstance(config, dict):
        base = dict(config)
    elif config is not None:
        base = FitConfig.from_yaml(config).to_dict()
    else:
        base = {}
    base.update(overrides)  # a strategy option among them (lora_r=4) goes into options in `from_dict`
    if data is not None:
        base["data"] = str(data)
    tasks = base.get("task") or (base.get("options") or {}).get("task")  # multitask's datasets stand for the data
    if not base.get("data") and tasks:
        base["data"] = "+".join(str(t).partition("=")[0] for t in ([tasks] if isinstance(tasks, str) else tasks))
    if not base.get("data"):
        raise ConfigError("no data given: pass a folder, a table file or a built-in name (digits, demo-text)")
    return FitConfig.from_dict(base)


def _default_name(cfg: FitConfig, model: str) -> str:
    stem = Path(cfg.data.rstrip("/")).name or cfg.data
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.split("/")[-1])
    return f"{Path(stem).stem}-{model}-{cfg.strategy}"


def _planned_out(cfg: FitConfig, model: str) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / (cfg.name or _default_name(cfg, model))


def _prepare_out(cfg: FitConfig, model: str) -> Path:
    out = _planned_out(cfg, model)
    return prepare_output_dir(out, overwrite=cfg.overwrite, resume=cfg.resume, markers=("config.yaml", "model.json"),
                              what="a headstart run", options="--out/--name")


@contextlib.contextmanager
def _removed_if_refused(out: Path, fresh: bool) -> Iterator[None]:
    """A fit refused before training left anything to resume (bad option, missing weights, a network the
    frozen-layer cache cannot cut) removes the folder it just made, so the corrected command needs no --overwrite."""
    try:
        yield
    except HeadstartError:
        if fresh and not (out / "checkpoints").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def resolve(cfg: FitConfig, data: Dataset, backbone: Backbone, strategy: type[Strategy], out: Path) -> FitConfig:
    """Every default that depends on the data, the backbone or the strategy, filled once (recorded in config.yaml).

    Changes the backbone where the configuration says so: its pooling (``--pool``; ``auto`` is the strategy's
    choice where the backbone can pool that way) and its longest input (``--max-length``).
    """
    lr_given = cfg.lr is not None
    cfg = cfg.resolved(data.modality, len(data.train_idx), data.task)
    pool = cfg.pool if cfg.pool != "auto" else strategy.pool
    if pool != "avg":
        try:
            backbone.set_pool(pool)
        except ConfigError:
            if cfg.pool != "auto":
                raise  # asked for by name; under auto (e.g. a ViT's class token) the model's own pooling stays
    if backbone.max_length is not None:
        backbone.max_length = cfg.max_length
    changes: dict[str, Any] = {"out": str(out), "pool": backbone.spec.get("pool", "avg")}
    if not lr_given and backbone.default_lr:
        changes["lr"] = backbone.default_lr  # e.g. from-scratch embeddings need a larger step
    return dataclasses.replace(cfg, **changes)


def backbone_for(cfg: FitConfig, ds: Dataset, backbone: Backbone | None = None) -> Backbone:
    """The backbone a fit of ``cfg`` on ``ds`` starts from: built after seeding as every fit seeds (a
    from-scratch network's weights), and checked against the data's modality. Shared by `run_pipeline`, `tune`
    and `extract`, so that all three make the same network (and the same feature-cache key)."""
    from .._seed import seed_everything

    seed_everything(cfg.seed)
    if backbone is None:
        backbone = build_backbone(cfg.model, weights=cfg.weights, pretrained=cfg.pretrained)
    if backbone.modality != ds.modality:
        raise ConfigError(f"option --model: {cfg.model} is {kind_of(backbone.modality)} but {cfg.data} holds {ds.modality}s")
    return backbone


@dataclass
class Fitted:
    """What `run_pipeline` returns: where the run was written and its metrics.

    ``writer`` is False in the extra processes of a distributed fit: they trained their part, and the run
    folder is written by the first process alone.
    """

    path: Path
    metrics: dict[str, Any]
    writer: bool = True

    def load(self) -> Run:
        from ..run import load_run

        # The run this fit just wrote: its code is the code this fit ran (named by the user, or trusted).
        return load_run(self.path, trust_code=at_least("yes"))


def run_pipeline(cfg: FitConfig, *, dataset: Dataset | None = None, backbone: Backbone | None = None,
                 record: bool = True, held_out: bool = True, folds: bool = True,
                 callbacks: list[Any] | None = None) -> Fitted:
    """Fit ``cfg`` and write its run directory (see the module docstring for the order).

    ``dataset``: an already-loaded `Dataset` (else ``cfg.data`` is read); ``backbone``: an already-built
    backbone (else ``cfg.model`` is built). ``record=False`` skips what only a person reads (plots, report,
    what `rank` predicted): for internal fits such as the ranking proxy. ``held_out=False`` leaves the reported
    split unscored: for fits that a search chooses between (`tune`'s trials), which must not see it.
    ``cfg.cv`` runs the folds too (`tasks.cv`), which call this with ``folds=False`` for each fit.
    ``callbacks``: Lightning callbacks for the training loop (`tune`'s pruning of bad trials).
    """
    t_start = time.perf_counter()
    strategy_cls = get_strategy(cfg.strategy)
    options_for(cfg)  # fail on a misspelled strategy or a bad option before any work
    if cfg.cv and folds:
        return _run_folds(cfg, cfg.cv, dataset=dataset, backbone=backbone, record=record, held_out=held_out)
    seeds = cfg.seeds if cfg.seeds is not None else strategy_cls.default_seeds
    if seeds > 1:
        return _run_seeds(cfg, seeds, dataset=dataset, backbone=backbone, record=record, held_out=held_out)
    ds = dataset if dataset is not None else strategy_cls.read_data(cfg)  # splits are seeded by cfg.seed
    refuse_task(strategy_cls, ds.task)
    model = cfg.model_for(ds.modality)
    cfg = dataclasses.replace(cfg, model=model)
    # In a distributed fit every process runs this pipeline; only global rank 0 touches the run folder.
    writer = cfg.devices * cfg.num_nodes == 1 or global_rank(cfg.devices) == 0
    out = _prepare_out(cfg, model) if writer else _planned_out(cfg, model)
    with _removed_if_refused(out, fresh=writer and not cfg.resume):  # a resumed folder is never removed
        if backbone is None:
            preflight(model, weights=cfg.weights, pretrained=cfg.pretrained)  # e.g. hub weights: refused before torch
        import torch

        from ..features import default_cache_dir
        from ..run import dump_config

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        backbone = backbone_for(cfg, ds, backbone)
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        # before the pooling or training change the backbone's fingerprint
        predicted = predicted_for(cache_dir, ds.fingerprint(), backbone) if record else None
        cfg = resolve(cfg, ds, backbone, strategy_cls, out)
        if writer:
            dump_config(out, {**cfg.to_dict(), "resume": False})
        strategy = strategy_cls(cfg)
        ctx = FitContext(cfg=cfg, data=ds, backbone=backbone, head=None, run_dir=out, cache_dir=cache_dir)  # type: ignore[arg-type]
        if writer:
            ctx.loggers = make_loggers(cfg, out, ds.name)
        ctx.callbacks = list(callbacks or [])
        strategy.new_head(ctx)
        try:
            strategy.prepare(ctx)
            if strategy.trains:
                from ..training import engine  # Lightning is imported only by fits that train

                engine.train(strategy, ctx)
        finally:
            strategy.cleanup(ctx)
        if not writer:
            return Fitted(out, {}, writer=False)
        strategy.decide(ctx)
        outcome = strategy.finish(ctx)

    metrics = _evaluate(ctx, strategy, held_out)
    skipped = "skipped_rows" if ds.modality == "text" else "skipped_files"  # unusable table rows / unreadable files
    metrics["fit"] = {"strategy": cfg.strategy, "model": cfg.model, **ctx.info,
                      "wall_seconds": round(time.perf_counter() - t_start, 2), skipped: len(ds.skipped)}
    ds = ctx.data  # a strategy may have split it anew (few-shot: by class)
    metrics["data"] = {**ds.summary(), "stats": ds.stats()}
    if predicted:
        metrics["predicted"] = predicted
    if ds.skipped:
        metrics["data"][skipped] = [{"where": f, "reason": r} for f, r in ds.skipped]
    _write(ctx, metrics, outcome, record)
    log_run(ctx.loggers, ctx.cfg.to_dict(), metrics)
    return Fitted(out, metrics)


def refuse_task(strategy: type[Strategy], task: str) -> None:
    """One line when ``strategy`` does not handle a ``task`` target (e.g. few-shot episodes need classes)."""
    if task not in strategy.tasks:
        raise ConfigError(f"option --strategy {strategy.name}: a {task} target is not supported (it handles "
                          f"{', '.join(strategy.tasks)}); use finetune or linear, which handle every task type")


def _run_seeds(cfg: FitConfig, n: int, *, dataset: Dataset | None, backbone: Backbone | None, record: bool,
               held_out: bool) -> Fitted:
    """``n`` fits of one configuration, seeds ``cfg.seed ...``, on one data split; the kept one becomes the run.

    Each seed is a complete run in ``<out>/seeds/seed-K``. The one kept is the best by the strategy's
    ``selection_criterion`` (label-free; domain adaptation) or else by selection-split accuracy, never by the
    reported split; a strategy's own comparable numbers (``metrics["figures"]``) are listed per seed too; it is moved up to ``<out>``, whose metrics.json gains ``seeds``: every seed's figures and
    their mean and standard deviation. The others keep their metrics, history and report, not their weights.
    A seed already finished is not fitted again under ``--resume``; the interrupted one resumes.
    """
    import copy
    import json
    import statistics

    import yaml

    from ..run import dump_config, write_json

    if cfg.devices * cfg.num_nodes > 1:
        raise ConfigError(f"option --seeds: {n} seeds in one distributed fit is not supported; give --seeds 1")
    ds = dataset if dataset is not None else get_strategy(cfg.strategy).read_data(cfg)  # one split for every seed
    model = cfg.model_for(ds.modality)
    out = _prepare_out(dataclasses.replace(cfg, model=model), model)
    dump_config(out, {**cfg.to_dict(), "model": model, "out": str(out), "seeds": n, "resume": False})
    rows, fitted = [], []
    for k in range(n):
        seed, folder = cfg.seed + k, out / "seeds" / f"seed-{cfg.seed + k}"
        if (folder / "metrics.json").is_file():  # finished before an interruption
            f = Fitted(folder, json.loads((folder / "metrics.json").read_text()))
        else:
            again = (folder / "checkpoints").is_dir()
            one = dataclasses.replace(cfg, seed=seed, seeds=1, out=str(folder), resume=again, overwrite=not again)
            info(f"seed {k + 1} of {n} (--seed {seed})")
            try:
                f = run_pipeline(one, dataset=ds, backbone=copy.deepcopy(backbone) if backbone is not None else None,
                                 record=record, held_out=held_out)
            except HeadstartError:  # refused (a bad option): the folder goes too, unless a seed left work behind
                done = [p for pattern in ("seed-*/metrics.json", "seed-*/checkpoints") for p in (out / "seeds").glob(pattern)]
                if not cfg.resume and not done:
                    shutil.rmtree(out, ignore_errors=True)
                raise
        fitted.append(f)
        m = f.metrics
        # every fit's scores, then the figures the strategy publishes for comparison (e.g. target accuracy)
        rows.append({"seed": seed, "criterion": m.get("selection_criterion", {}).get("value"),
                     "selection_score": m.get("val", {}).get("score"), "test_score": m.get("test", {}).get("score"),
                     **m.get("figures", {})})
    crit = fitted[0].metrics.get("selection_criterion")
    if crit and all(r["criterion"] is not None for r in rows):
        sign = 1.0 if crit.get("goal") == "min" else -1.0
        best = min(range(n), key=lambda i: sign * rows[i]["criterion"])
        by = f"{crit['name']} ({crit.get('goal', 'max')}imum, label-free)"
    else:
        best = max(range(n), key=lambda i: rows[i]["selection_score"] if rows[i]["selection_score"] is not None else -np.inf)
        by = f"selection-split {fitted[0].metrics.get('val', {}).get('score_name', 'accuracy').replace('_', ' ')}"
    kept = fitted[best].path
    for entry in kept.iterdir():
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        shutil.move(str(entry), str(target))
    kept.rmdir()
    for f in fitted:
        if f.path != kept:
            (f.path / "model.safetensors").unlink(missing_ok=True)
    spread = {}
    figures = [k for k in rows[0] if k not in ("seed", "criterion")]
    for key in figures:
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            spread[key] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    metrics = dict(fitted[best].metrics)
    metrics["seeds"] = {"n": n, "kept": rows[best]["seed"], "by": by, "rows": rows, "spread": spread}
    report = metrics.setdefault("report", {"summary": [], "sections": []})
    report["summary"] = report.get("summary", []) + [
        ["seeds", f"{n}; kept --seed {rows[best]['seed']} by {by}"],
        *([f"{k.replace('_', ' ')} over seeds", f"{v['mean']:.4f} ± {v['std']:.4f}"] for k, v in spread.items())]
    report.setdefault("sections", []).append({
        "title": "Seeds", "columns": ["seed", "criterion", *(k.replace("_", " ") for k in figures)],
        "rows": [[r["seed"], *("" if r.get(c) is None else r[c] for c in ("criterion", *figures))] for r in rows],
        "note": f"kept: --seed {rows[best]['seed']}, by {by}; the others are in seeds/ (metrics, history, report)."})
    kept_cfg = {**yaml.safe_load((out / "config.yaml").read_text()), "out": str(out), "seeds": n}
    dump_config(out, kept_cfg)
    write_json(out / "metrics.json", metrics)
    if record:
        write_report(out, kept_cfg, metrics, metrics["data"])
    return Fitted(out, metrics)


def _run_folds(cfg: FitConfig, k: int, *, dataset: Dataset | None, backbone: Backbone | None, record: bool,
               held_out: bool) -> Fitted:
    """``--cv K`` (`tasks.cv`): the fit on the whole training part, as without it, then one fit per fold in
    ``<out>/folds/fold-J`` (kept without weights); the run's metrics gain ``cv``. Resumes fold by fold."""
    import copy
    import json

    import yaml

    from ..run import write_json
    from .cv import add_to_report, folds

    strategy = get_strategy(cfg.strategy)
    if strategy.splits_by_class:
        raise ConfigError(f"option --cv: {cfg.strategy} splits its data by class (few-shot episodes); its interval "
                          "comes from its test episodes already")
    ds = dataset if dataset is not None else strategy.read_data(cfg)
    parts = folds(ds, k, cfg.seed)  # refused (too few examples or groups) before any fit
    planned = Path(cfg.out) if cfg.out else None
    if cfg.resume and planned is not None and (planned / "metrics.json").is_file():  # fitted before an interruption
        main = Fitted(planned, json.loads((planned / "metrics.json").read_text()))
    else:
        main = run_pipeline(cfg, dataset=ds, backbone=copy.deepcopy(backbone) if backbone is not None else None,
                            record=record, held_out=held_out, folds=False)
    out = main.path
    metrics = dict(main.metrics)
    metrics["cv"] = fold_fits(cfg, k, ds, out, backbone, parts)
    add_to_report(metrics, k)
    write_json(out / "metrics.json", metrics)
    if record:
        write_report(out, yaml.safe_load((out / "config.yaml").read_text()), metrics, metrics["data"],
                     examples=shown(ds, metrics.get("test", {})))
    return Fitted(out, metrics)


def fold_fits(cfg: FitConfig, k: int, ds: Dataset, out: Path, backbone: Backbone | None = None,
              parts: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """The ``k`` fold fits of ``cfg`` on ``ds``'s training part, in ``<out>/folds/fold-J`` (kept without weights;
    one finished before an interruption is read back), summarised (`tasks.cv.summarise`)."""
    import copy
    import json

    from .cv import fold_dataset, fold_row, folds, summarise

    parts = parts if parts is not None else folds(ds, k, cfg.seed)
    rows = []
    for j, (train, scored) in enumerate(parts):
        folder = out / "folds" / f"fold-{j + 1}"
        if (folder / "metrics.json").is_file():  # finished before an interruption
            m = json.loads((folder / "metrics.json").read_text())
        else:
            info(f"fold {j + 1} of {k}: training on {len(train)}, scoring {len(scored)}")
            again = (folder / "checkpoints").is_dir()
            one = dataclasses.replace(cfg, out=str(folder), resume=again, overwrite=not again)
            m = run_pipeline(one, dataset=fold_dataset(ds, train, scored, cfg, j), record=False, folds=False,
                             backbone=copy.deepcopy(backbone) if backbone is not None else None).metrics
            (folder / "model.safetensors").unlink(missing_ok=True)
        rows.append(fold_row(j, len(train), m))
    return summarise(rows, k, grouped=ds.groups is not None)


def _evaluate(ctx: FitContext, strategy: Strategy, held_out: bool = True) -> dict[str, Any]:
    """Once on the reported split (unless ``held_out`` is False); the selection split is reported separately
    (unless it was trained on).

    For classes, ``metrics["calibration"]``: the held-out split's ECE and reliability bins, and the temperature
    fitted on the selection split with what it would give held out; ``metrics["test"]`` gains the most
    confidently wrong examples and the most confused pairs (by position in the reported split)."""
    from ..evaluate import calibration, confidently_wrong, confused_pairs

    ds, metrics, outputs = ctx.data, {}, {}
    for split, idx in (("test", ds.test_idx if held_out else ds.test_idx[:0]), ("val", ds.val_idx)):
        if len(idx) and not (split == "val" and strategy.fits_selection_split):
            metrics[split], out = strategy.score(ctx, idx)
            if out is not None:
                outputs[split] = out
    if "test" in outputs and not ds.targets and ds.kind.calibrates:
        y, refs = ds.y[ds.test_idx], [ds.refs[i] for i in ds.test_idx]
        sel = (ds.y[ds.val_idx], outputs["val"]) if "val" in outputs else (None, None)
        metrics["calibration"] = calibration(y, outputs["test"], *sel)
        metrics["test"]["confidently_wrong"] = [{**w, "ref": refs[w["position"]]}
                                                for w in confidently_wrong(y, outputs["test"], ds.classes)]
        metrics["test"]["confused_pairs"] = [{**c, "refs": [refs[p] for p in c["positions"]]}
                                             for c in confused_pairs(y, outputs["test"], ds.classes)]
    return metrics


def _write(ctx: FitContext, metrics: dict[str, Any], outcome: Outcome, record: bool) -> None:
    """The run directory: weights, history, metrics (with the strategy's own results), plots, report and model
    card; with ``record``, the confident mistakes' explanations (`run.explain`)."""
    from ..run import save_model, write_history, write_json

    out, ds = ctx.run_dir, ctx.data
    save_model(out, ctx.backbone, ctx.head, ds.task, ds.classes, ctx.cfg.dropout, record=outcome.model,
               tensors=outcome.weights)
    metrics.update(outcome.metrics)
    if outcome.summary or outcome.sections:
        metrics["report"] = {"summary": [list(r) for r in outcome.summary], "sections": outcome.sections}
    examples = shown(ds, metrics.get("test", {})) if record else {}
    wrong = metrics.get("test", {}).get("confidently_wrong", [])[:EXPLAINED] if record else []
    if wrong:  # before metrics.json: each gains its explanation
        from ..run.explain import explain_mistakes

        explain_mistakes(out, ctx.backbone, ctx.head, ds.modality, wrong, [examples[w["ref"]] for w in wrong], ds.classes)
    write_history(out, ctx.history)
    write_json(out / "metrics.json", metrics)
    if record:
        plot_learning_curves(ctx.history, out / "plots" / "learning_curves.png")
        if "confusion_matrix" in metrics.get("test", {}):
            plot_confusion(metrics["test"]["confusion_matrix"], ds.classes, out / "plots" / "confusion_matrix.png",
                           "confusion matrix (held-out split)")
        for name, m in metrics.get("test", {}).get("tasks", {}).items():  # several targets: one per class task
            if "confusion_matrix" in m:
                plot_confusion(m["confusion_matrix"], ds.targets[name].classes, out / "plots" / f"confusion_matrix_{name}.png",
                               f"{name}: confusion matrix (held-out split)")
        if "calibration" in metrics:
            plot_reliability(metrics["calibration"], out / "plots" / "reliability.png")
        write_report(out, ctx.cfg.to_dict(), metrics, metrics["data"], examples=examples)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    info(f"run written to {out}")


EXPLAINED = 6  # confidently wrong held-out examples whose predicted class the report explains


def shown(ds: Dataset, test: dict[str, Any]) -> dict[str, Any]:
    """The examples the report shows (confused pairs, confident mistakes), by where they came from."""
    refs = {w["ref"] for w in test.get("confidently_wrong", [])} | {r for p in test.get("confused_pairs", []) for r in p["refs"]}
    return {ds.refs[i]: ds.items[i] for i in ds.test_idx if ds.refs[i] in refs}


def fit(data: Any = None, *, config: FitConfig | str | Path | dict | None = None, dataset: Dataset | None = None,
        trust_code: bool | str | None = None, **overrides: Any) -> Run | None:
    """Fit a transferred model and write its run directory.

    The library face of ``headstart fit``: the same options, the same pipeline, the same run folder.

    Args:
        data: An image folder, a table of texts (CSV, TSV, JSONL, Parquet) or a built-in name (``"digits"``,
            ``"demo-text"``).
        config: A `FitConfig`, a dict of its fields or a YAML file (``config.yaml`` of an earlier run works).
        dataset: An already-loaded `Dataset` (from `load_data`) instead of ``data``.
        trust_code: Whether code named by a run folder this fit reads may run: a ``run:`` source model or a
            distillation teacher built by a ``py:`` factory (see `load_run`). A ``py:`` factory named in the
            model string itself is the caller's own choice and always runs.
        **overrides: `FitConfig` fields (``model``, ``strategy``, ``epochs``, ``lr``, ``out`` ...) and the
            strategy's own options (``lora_r``, ``teacher`` ...), as the command line's flags.

    Returns:
        The fitted `Run`, loaded from its folder. With ``devices=N`` Lightning starts this script again for
        each extra process (guard the call with ``if __name__ == "__main__":``); there `fit` returns None once
        the process has trained its part, and the run is written, and returned, by the first process.

    Raises:
        HeadstartError: Bad data or options, named with the file, row or option and what to do.

    Examples:
        >>> import headstart
        >>> run = headstart.fit("demo-text", model="minilm", strategy="linear", out="runs/topics")
        >>> run.metrics["test"]["accuracy"] > 0.9
        True
        >>> run.predict(["the striker scored twice before half time"])[0]["label"]
        'sport'
    """
    if dataset is not None and data is None and not (config or overrides.get("data")):
        overrides["data"] = dataset.name
    with trusting(trust_code):
        fitted = run_pipeline(as_config(data, config, overrides), dataset=dataset)
    return fitted.load() if fitted.writer else None


def summary_rows(run: Run) -> list[tuple[str, str]]:
    """The closing summary table of a fit (CLI): what every fit reports, then the strategy's own rows."""
    m = run.metrics
    test, fit_info, data = m.get("test", {}), m.get("fit", {}), m.get("data", {})
    names = {"multilabel": "labels", "regression": "targets", "multitask": "tasks"}.get(run.task, "classes")
    rows = [
        ("run", str(run.path)),
        ("data", f"{data.get('name')} ({data.get('modality')}, {data.get('task')}, {len(run.classes)} {names})"),
        ("examples train / select / report", f"{data.get('n_train')} / {data.get('n_val')} / {data.get('n_test')}"),
        ("model / strategy", f"{fit_info.get('model')} / {fit_info.get('strategy')}"),
    ]
    rows.extend(decided_rows(data.get("decided", {})))
    leak = data.get("leakage") or {}
    if leak.get("exact") or leak.get("near"):
        rows.append(("copies across the splits", f"{leak['exact']} exact, {leak['near']} near"
                     + (" (training copies dropped)" if leak.get("dropped") else " (--dedupe drops them)")))
    for prefix, t, part in ([("", run.task, test)] if run.task != "multitask" else
                            [(f"{n}: ", run.tasks[n]["task"], m) for n, m in test.get("tasks", {}).items()]):
        for k in get_task_type(t).headline:
            if k in part:
                rows.append((f"{prefix}held-out {k.replace('_', ' ')}", f"{part[k]:.4f}"))
    if "predicted" in m:
        p = m["predicted"]
        score = p["scores"].get(p["by"])
        rows.append(("predicted by `headstart rank`", f"rank {p['rank']} of {p['of']}, {p['by']} {score:.4f}"
                     if score is not None else f"rank {p['rank']} of {p['of']}"))
    if "val" in m:
        name = m["val"].get("score_name", "accuracy")
        rows.append((f"selection-split {name.replace('_', ' ')}", f"{m['val'].get('score', m['val'].get('accuracy')):.4f}"))
    rows.extend((str(k), str(v)) for k, v in m.get("report", {}).get("summary", []))
    for k in ("decisions", "kept_epoch", "epochs_run", "precision", "samples_per_second", "wall_seconds", "skipped_files",
              "skipped_rows"):
        if k in fit_info:
            rows.append((k.replace("_", " "), str(fit_info[k])))
    if "mfu" in fit_info:
        rows.append(("MFU (of this machine's matmul peak)", f"{100 * fit_info['mfu']:.1f}% ({fit_info['achieved_gflops']} of "
                     f"{fit_info['peak_gflops']} GFLOP/s {fit_info['peak_dtype']})"))
    return rows


__all__ = ["Fitted", "as_config", "backbone_for", "fit", "fold_fits", "resolve", "run_pipeline", "summary_rows"]
