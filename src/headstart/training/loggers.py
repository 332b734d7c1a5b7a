"""``--logger``: the experiment trackers people already use, through Lightning's loggers.

The run folder is the record of a fit; these copy its curves and figures where a team looks at them. CSV
(``logs/metrics.csv``) is always written by the engine. ``tensorboard`` writes event files to
``<run>/logs/tensorboard`` (through ``tensorboard`` or ``tensorboardX``, whichever is installed), the final figures
in its ``final/`` sub-folder. ``mlflow``
logs to ``$MLFLOW_TRACKING_URI`` when set, else to a local store beside the run folders: one SQLite file,
``<runs>/mlflow.db`` (``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`` shows it). MLflow 3 keeps its
older ``mlruns/`` folder store in maintenance mode and refuses it by default, and recommends SQLite for local
use; a single file is also what the other stores of this project are (Optuna's study). One experiment per
data set, one MLflow run per headstart run, named after its folder. Every tracker gets the resolved configuration, each
epoch's curves, and the final held-out and selection figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def make_loggers(cfg: Any, run_dir: Path, data_name: str) -> list[Any]:
    """The Lightning loggers ``--logger`` names besides CSV (none by default)."""
    names = [n for n in cfg.loggers() if n != "csv"]
    out: list[Any] = []
    for name in names:
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            try:
                out.append(TensorBoardLogger(str(run_dir / "logs"), name="tensorboard", version="",
                                             default_hp_metric=False))
            except ModuleNotFoundError:
                raise ConfigError("option --logger tensorboard: needs the tensorboard or tensorboardX package; "
                                  "pip install 'headstart[loggers]'") from None
        elif name == "mlflow":
            import logging

            from lightning.pytorch.loggers import MLFlowLogger

            try:
                import mlflow  # noqa: F401  (it sets up its own logging when imported)
            except ModuleNotFoundError:
                raise ConfigError("option --logger mlflow: needs the mlflow package (mlflow-skinny is enough); "
                                  "pip install 'headstart[loggers]'") from None
            logging.getLogger("mlflow").setLevel(logging.WARNING)  # its table set-up and migrations, line by line
            logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)  # "... Creating it."

            home = run_dir.resolve().parent
            uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
            out.append(MLFlowLogger(experiment_name=data_name, run_name=run_dir.name, tracking_uri=uri,
                                    artifact_location=(home / "mlartifacts").as_uri(),
                                    tags={"headstart.run": str(run_dir.resolve())}))
    return out


def log_run(loggers: list[Any], config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """The resolved configuration and the final figures (``test_*`` held out, ``val_*`` selection split), then close."""
    if not loggers:
        return
    params = {k: v for k, v in config.items() if v is not None and not isinstance(v, dict)}
    params.update({f"option.{k}": v for k, v in (config.get("options") or {}).items()})
    final = {f"{split}_{k}": float(v) for split in ("test", "val") for k, v in metrics.get(split, {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for lg in loggers:
        lg = _after_training(lg)
        lg.log_hyperparams(params)
        lg.log_metrics(final)
        lg.finalize("success")


def _after_training(lg: Any) -> Any:
    """The logger to write the final figures with. Lightning closes a TensorBoard writer when training ends, and a
    new writer in the same folder within the same second gets the same event-file name and truncates the curves:
    the final figures go to a ``final/`` sub-folder of their own (TensorBoard shows it as a second run)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if isinstance(lg, TensorBoardLogger):
        return TensorBoardLogger(lg.save_dir, name=lg.name, version=lg.version, sub_dir="final", default_hp_metric=False)
    return lg


__all__ = ["log_run", "make_loggers"]
