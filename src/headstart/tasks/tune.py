"""`headstart tune DATA --strategy S --trials N`: hyperparameter search with Optuna, alone or by many workers.

Each trial is one fit through the fit pipeline, with the values the strategy's `search_space` draws (TPE);
its score is the selection split's log-loss (for ``linear``, its cross-validated log-loss), never the
reported split, which the trials do not even score (``held_out=False``). The winner is then fitted once more,
into ``<out>/best``, and that run alone is evaluated on the reported split.

Several workers share one study through its storage: start the same command (``--trials M`` each) on as many
processes or machines as you like with the same ``--storage`` and ``--study``; Optuna hands each trial to one
worker, so N workers x M trials give N x M trials. Storage: a journal file in the output folder by default
(safe for processes on one machine), or any database URL Optuna takes (``postgresql://...``,
``sqlite:///...``) for machines. ``--no-refit`` on the workers, then one ``--trials 0`` run refits the winner.

Left for the evaluation issue: pruning of bad trials, and cross-validated objectives for the methods that train.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .._progress import info, quiet
from ..config import FitConfig
from ..errors import ConfigError, HeadstartError
from ..training.strategies import get_strategy
from .fit import as_config, backbone_for, resolve, run_pipeline

JOURNAL = "study.journal"


def open_storage(url: str | None, folder: Path) -> Any:
    """Optuna storage: ``None`` = a journal file in ``folder``; ``journal:PATH``; else a database URL."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None or url.startswith("journal:"):
        path = folder / JOURNAL if url is None else Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
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
    raise HeadstartError("tune: the fit left no selection split to score trials on; give --val-fraction > 0")


def default_out(data: str, strategy: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(data).rstrip("/")).stem or str(data))
    return Path("runs") / f"tune-{stem}-{strategy}"


def tune(data: str, *, trials: int, strategy: str = "finetune", storage: str | None = None, study: str | None = None,
         out: str | Path | None = None, refit: bool = True, seed: int = 0, **fit_options: Any) -> dict[str, Any]:
    """Run ``trials`` trials of the study (created, or joined when it exists) and refit its best so far.

    ``fit_options``: `FitConfig` fields and strategy options shared by every trial (the searched ones are
    drawn per trial). Returns the record written to ``<out>/tune.json``.
    """
    import optuna

    if trials < 0:
        raise ConfigError(f"option --trials: {trials} must be >= 0")
    for k in ("out", "name", "resume", "overwrite", "strategy", "data"):
        if k in fit_options:
            raise ConfigError(f"tune: option {k} is set per trial; drop it")
    base = as_config(data, None, {"strategy": strategy, "seed": seed, **fit_options})
    strategy_cls = get_strategy(base.strategy)
    if not strategy_cls.trains:
        raise ConfigError(f"tune: {base.strategy} has nothing to search (it trains nothing: its head's strength is "
                          "chosen by cross-validation inside the fit); tune a method that trains, e.g. finetune or lora")
    folder = Path(out) if out is not None else default_out(data, base.strategy)
    ours = ("trials", "best", "tune.json", JOURNAL)  # what a tune folder holds (the journal's lock files too)
    if folder.is_dir() and any(not f.name.startswith(ours) for f in folder.iterdir()):
        raise HeadstartError(f"{folder}: exists and is not a headstart tune folder; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    ds = strategy_cls.read_data(base)  # once: every trial fits the same split
    base = dataclasses.replace(base, model=base.model_for(ds.modality))
    # the defaults a fit would take (the backbone's own learning rate among them): the centre of the search
    resolved = resolve(base, ds, backbone_for(base, ds), strategy_cls, folder)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study or folder.name
    store = open_storage(storage, folder)
    joined = optuna.create_study(study_name=name, storage=store, direction="minimize", load_if_exists=True)
    # seeded, and different for a worker that joins a study other workers have already advanced
    sampler = optuna.samplers.TPESampler(seed=seed + len(joined.trials))
    study_ = optuna.load_study(study_name=name, storage=store, sampler=sampler)

    def config(params: dict[str, Any], out: Path) -> FitConfig:
        return FitConfig.from_dict({**base.to_dict(), **params, "out": str(out), "overwrite": True})

    def objective(trial: optuna.Trial) -> float:
        run_dir = folder / "trials" / f"trial-{trial.number:04d}"
        fitted = run_pipeline(config(strategy_cls.search_space(trial, resolved), run_dir), dataset=ds, record=False,
                              held_out=False)
        trial.set_user_attr("run", str(run_dir))
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
        "study": name, "storage": _without_password(storage) or f"journal:{folder / JOURNAL}", "strategy": base.strategy,
        "model": base.model, "objective": "selection-split log-loss (lower is better)",
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                    "selection_score": t.user_attrs.get("selection_score")} for t in study_.trials],
        "best": {"number": best.number, "value": best.value, "params": best.params},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if refit:
        fitted = run_pipeline(config(best.params, folder / "best"), dataset=ds)  # the one fit scored on the reported split
        record["refit"] = {"run": str(fitted.path), "test": fitted.metrics.get("test", {})}
        info(f"best trial {best.number} refitted into {fitted.path}")
    atomic_write_text(folder / "tune.json", json.dumps(record, indent=2, default=str))
    record["path"] = str(folder)
    return record


__all__ = ["open_storage", "selection_loss", "tune"]
