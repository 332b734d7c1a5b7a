"""`headstart tune DATA --strategy S --trials N`: hyperparameter search with Optuna, alone or by many workers.

Each trial is one fit through the fit pipeline, with the values the strategy's `search_space` draws (TPE);
its score is the selection split's log-loss, or with ``cv=K`` the mean log-loss of K fold fits on the
training part (`tasks.cv`), never the reported split, which the trials do not even score (``held_out=False``).
A trial whose selection loss is worse than the median of earlier trials at the same epoch is stopped there
(Optuna's ``MedianPruner`` through its Lightning callback, after 4 finished trials and from the second epoch;
``prune=False`` keeps every trial whole; cross-validated trials are never pruned).

The winner is then fitted once more, into ``<out>/best``, and the strategy's default configuration into
``<out>/default``: those two runs alone are evaluated on the reported split (with ``refit_seeds`` seeds each,
mean and spread). ``<out>/best.yaml`` holds the winner's configuration for ``headstart fit --config``;
``<out>/report.html`` the study: its history, the parameters' importances (fANOVA), and best against default.

Several workers share one study through its storage: start the same command (``--trials M`` each) on as many
processes or machines as you like with the same ``--storage`` and ``--study``; Optuna hands each trial to one
worker, so N workers x M trials give N x M trials. Storage: a SQLite file in the output folder by default
(``study.db``; Optuna's dashboard and API open it), ``journal:FILE`` for several workers on one machine (SQLite
is not made for parallel writers, optuna#4002), or any database URL Optuna takes (``postgresql://...``) for
machines. ``--no-refit`` on the workers, then one ``--trials 0`` run refits the winner.

"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from .._io import atomic_write_text
from .._progress import info, quiet, warn
from ..config import FitConfig
from ..errors import ConfigError, HeadstartError
from ..training.strategies import get_strategy
from ..report import write_tune_report
from .fit import as_config, backbone_for, fold_fits, resolve, run_pipeline

SQLITE = "study.db"
SMALL_SELECTION = 100  # selection examples below which `tune` suggests a cross-validated objective


def default_storage(folder: Path) -> str:
    """The study's storage when none is given: one SQLite file in the tune folder."""
    return f"sqlite:///{(folder / SQLITE).resolve()}"


def open_storage(url: str | None, folder: Path) -> Any:
    """Optuna storage: ``None`` = a SQLite file in ``folder`` (`default_storage`); ``journal:PATH``, a journal file
    (for several workers on one machine: Optuna's SQLite storage is not made for parallel writers, optuna#4002);
    else a database URL."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url is not None and url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url is None:
        folder.mkdir(parents=True, exist_ok=True)
        return _database(default_storage(folder))
    if "://" not in url:
        raise ConfigError(f"option --storage: {url!r} is not a database URL (postgresql://..., sqlite:///...) "
                          "nor journal:FILE")
    return _database(url)


def _database(url: str, attempts: int = 6) -> Any:
    """Optuna's RDBStorage for ``url``. Workers started together on a new database all create its tables at once,
    and all but one fail on a duplicate (optuna/optuna#1092, where the advice is to create the study first):
    they try again, and find the tables made."""
    import random

    from optuna.storages import RDBStorage
    from sqlalchemy.exc import SQLAlchemyError

    for _ in range(attempts - 1):
        try:
            return RDBStorage(url)
        except SQLAlchemyError:
            time.sleep(0.2 + random.random())
    try:
        return RDBStorage(url)
    except SQLAlchemyError as e:  # the credentials stay out of the message
        raise HeadstartError(f"option --storage: {_without_password(url)}: {str(e).splitlines()[0][:200]}") from None


def _without_password(url: str | None) -> str | None:
    """A database URL as it may be written down: ``postgresql://user:secret@host/db`` -> ``postgresql://user@host/db``."""
    return re.sub(r"^([^:/]+://[^:@/]+):[^@/]*@", r"\1@", url) if url else url


def selection_loss(metrics: dict[str, Any]) -> float:
    """A trial's score: log-loss on the selection split, or the cross-validated one of a method fitted on it."""
    if "val" in metrics:
        return float(metrics["val"]["log_loss"])
    if "cv_log_loss" in metrics.get("fit", {}):
        return float(metrics["fit"]["cv_log_loss"])
    raise HeadstartError("tune: the fit left no selection split to score trials on; give --val-fraction > 0, or --cv K")


def default_out(data: str, strategy: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(data).rstrip("/")).stem or str(data))
    return Path("runs") / f"tune-{stem}-{strategy}"


TUNE_FILES = ("trials", "best", "default", "tune.json", "best.yaml", "report.html", "plots", SQLITE)
RUNTIME = ("out", "name", "resume", "overwrite", "seeds", "cv")  # not part of a configuration to reuse


def tune(data: str, *, trials: int, strategy: str = "finetune", storage: str | None = None, study: str | None = None,
         out: str | Path | None = None, refit: bool = True, seed: int = 0, cv: int | None = None, prune: bool = True,
         refit_seeds: int = 1, **fit_options: Any) -> dict[str, Any]:
    """Run ``trials`` trials of the study (created, or joined when it exists) and refit its best so far.

    ``fit_options``: `FitConfig` fields and strategy options shared by every trial (the searched ones are
    drawn per trial). Returns the record written to ``<out>/tune.json``.
    """
    import optuna

    if trials < 0:
        raise ConfigError(f"option --trials: {trials} must be >= 0")
    if refit_seeds < 1:
        raise ConfigError(f"option --refit-seeds: {refit_seeds} must be at least 1")
    for k in ("out", "name", "resume", "overwrite", "strategy", "data", "cv"):
        if k in fit_options:
            raise ConfigError(f"tune: option {k} is set per trial; drop it" + (" (tune's own --cv cross-validates "
                              "each trial)" if k == "cv" else ""))
    base = as_config(data, None, {"strategy": strategy, "seed": seed, **fit_options})
    strategy_cls = get_strategy(base.strategy)
    if not strategy_cls.trains:
        raise ConfigError(f"tune: {base.strategy} has nothing to search (it trains nothing: its head's strength is "
                          "chosen by cross-validation inside the fit); tune a method that trains, e.g. finetune or lora")
    if cv is not None and cv < 2:
        raise ConfigError(f"option --cv: {cv} must be at least 2 folds")
    folder = Path(out) if out is not None else default_out(data, base.strategy)
    if folder.is_dir() and any(not f.name.startswith(TUNE_FILES) for f in folder.iterdir()):
        raise HeadstartError(f"{folder}: exists and is not a headstart tune folder; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    ds = strategy_cls.read_data(base)  # once: every trial fits the same split
    if not cv and 0 < len(ds.val_idx) < SMALL_SELECTION:
        warn(f"tune: each trial is scored on a selection split of {len(ds.val_idx)} examples: a search of many trials "
             "fits its noise (on hymenoptera's 37, the winner was no better held out than the default; docs/benchmarks.md). "
             "--cv 5 scores each trial on every training example, at about 5x the cost")
    base = dataclasses.replace(base, model=base.model_for(ds.modality))
    # the defaults a fit would take (the backbone's own learning rate among them): the centre of the search
    resolved = resolve(base, ds, backbone_for(base, ds), strategy_cls, folder)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study or folder.name
    store = open_storage(storage, folder)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1) if prune and not cv else optuna.pruners.NopPruner()
    joined = optuna.create_study(study_name=name, storage=store, direction="minimize", load_if_exists=True, pruner=pruner)
    # seeded, and different for a worker that joins a study other workers have already advanced
    sampler = optuna.samplers.TPESampler(seed=seed + len(joined.trials))
    study_ = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)

    def config(params: dict[str, Any], out: Path, **more: Any) -> FitConfig:
        return FitConfig.from_dict({**base.to_dict(), **params, "out": str(out), "overwrite": True, **more})

    def objective(trial: optuna.Trial) -> float:
        run_dir = folder / "trials" / f"trial-{trial.number:04d}"
        cfg = config(strategy_cls.search_space(trial, resolved), run_dir, seeds=1)
        trial.set_user_attr("run", str(run_dir))
        if cv:
            summary = fold_fits(cfg, cv, ds, run_dir)
            trial.set_user_attr("selection_score", summary["figures"].get("score", {}).get("mean"))
            return float(summary["figures"]["log_loss"]["mean"])
        from optuna_integration import PyTorchLightningPruningCallback

        try:
            fitted = run_pipeline(cfg, dataset=ds, record=False, held_out=False,
                                  callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_loss")] if prune else None)
        except optuna.TrialPruned:  # stopped early: its resume checkpoint is of no use
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            raise
        if "val" in fitted.metrics:
            trial.set_user_attr("selection_score", fitted.metrics["val"].get("score"))
        return selection_loss(fitted.metrics)

    t0 = time.perf_counter()
    if trials:
        # a learning rate that diverges fails its trial (FAIL in the study), not the search
        study_.optimize(objective, n_trials=trials, show_progress_bar=not quiet(), catch=(FloatingPointError,))
    done = [t for t in study_.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise HeadstartError(f"tune: study {name!r} has no finished trial yet; run some with --trials N")
    best = study_.best_trial
    record: dict[str, Any] = {
        "study": name, "storage": _without_password(storage) or default_storage(folder), "strategy": base.strategy,
        "model": base.model, "objective": (f"{cv}-fold cross-validated log-loss on the training part" if cv else
                                           "selection-split log-loss") + " (lower is better)",
        "pruning": "median, after 4 trials, from epoch 2" if prune and not cv else "none",
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                    "selection_score": t.user_attrs.get("selection_score"),
                    "epochs_run": (max(t.intermediate_values) + 1) if t.intermediate_values else None}
                   for t in study_.trials],
        "best": {"number": best.number, "value": best.value, "params": best.params},
        "importances": _importances(study_),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    reusable = {k: v for k, v in {**base.to_dict(), **best.params}.items() if k not in RUNTIME}
    atomic_write_text(folder / "best.yaml", yaml.safe_dump(reusable, sort_keys=False))
    if refit:
        t1 = time.perf_counter()
        more = {"seeds": refit_seeds}
        for key, tag, params in (("refit", "best", best.params), ("default", "default", {})):
            fitted = run_pipeline(config(params, folder / tag, **more), dataset=ds)  # scored on the reported split
            record[key] = _refit_record(fitted)
            info(f"{tag} configuration refitted into {fitted.path}")
        record["refit_seconds"] = round(time.perf_counter() - t1, 2)
    atomic_write_text(folder / "tune.json", json.dumps(record, indent=2, default=str))
    write_tune_report(folder, record, data)
    record["path"] = str(folder)
    return record


def _refit_record(fitted: Any) -> dict[str, Any]:
    """A refitted run: where, its held-out figures, and over seeds the mean and spread of its held-out score."""
    m = fitted.metrics
    out = {"run": str(fitted.path), "test": m.get("test", {}), "val": m.get("val", {}),
           "wall_seconds": m.get("fit", {}).get("wall_seconds")}
    spread = m.get("seeds", {}).get("spread", {}).get("test_score")
    if spread:
        out["seeds"] = {"n": m["seeds"]["n"], **spread, "scores": [r["test_score"] for r in m["seeds"]["rows"]]}
    return out


def _importances(study: Any) -> dict[str, float]:
    """fANOVA importances of the searched parameters (Optuna's default evaluator); empty with too few trials."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 3 or len({json.dumps(t.params, sort_keys=True, default=str) for t in done}) < 2:
        return {}
    try:
        return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study, normalize=True).items()}
    except (ValueError, RuntimeError):  # e.g. a parameter that took one value in every finished trial
        return {}


__all__ = ["default_storage", "open_storage", "selection_loss", "tune"]
