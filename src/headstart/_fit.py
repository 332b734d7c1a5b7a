"""`fit`: data -> backbone -> strategy -> engine -> run directory."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import torch

from ._io import prepare_output_dir
from ._progress import info
from ._rank import predicted_for
from ._seed import seed_everything
from .backbones import build_backbone
from .config import FitConfig
from .data import Dataset, load_data
from .errors import ConfigError, HeadstartError, kind_of
from .evaluate import compute_metrics, head_outputs, predict_outputs
from .features import default_cache_dir
from .heads import make_head
from .report import plot_confusion, plot_learning_curves, write_report
from .run import Run, dump_config, load_run, save_model, write_history, write_json
from .strategies import FitContext, get_strategy, options_for


def _as_config(data: Any, config: FitConfig | str | Path | dict | None, overrides: dict[str, Any]) -> FitConfig:
    if isinstance(config, FitConfig):
        base = config.to_dict()
    elif isinstance(config, dict):
        base = dict(config)
    elif config is not None:
        base = FitConfig.from_yaml(config).to_dict()
    else:
        base = {}
    base.update(overrides)
    if data is not None:
        base["data"] = str(data)
    if not base.get("data"):
        raise ConfigError("no data given: pass a folder, a table file or a built-in name (digits, demo-text)")
    return FitConfig.from_dict(base)


def _default_name(cfg: FitConfig) -> str:
    stem = Path(cfg.data.rstrip("/")).name or cfg.data
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.model.split("/")[-1])
    return f"{Path(stem).stem}-{model}-{cfg.strategy}"


def _prepare_out(cfg: FitConfig) -> Path:
    out = Path(cfg.out) if cfg.out else Path("runs") / (cfg.name or _default_name(cfg))
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


def _set_pool(backbone: Any, cfg: FitConfig) -> str:
    """Apply ``--pool``; ``auto`` is avgmax for `linear` on an image backbone that ends with an average pooling.

    Measured on MobileNetV1 x0.25 (docs/design-notes.md, "Speed"): average+max pooled frozen features lifted
    the logistic-regression probe by 3.3 points on hymenoptera and 1.5 on sign-language digits for the same
    single forward pass. Trained strategies keep the source model's pooling (and so its source head).
    """
    if cfg.pool == "avgmax" or (cfg.pool == "auto" and cfg.strategy == "linear" and backbone.modality == "image"):
        try:
            backbone.set_pool("avgmax")
        except ConfigError:
            if cfg.pool == "avgmax":
                raise
            # auto, and e.g. a ViT's class token: keep the model's own pooling
    return backbone.spec.get("pool", "avg")


def fit(data: Any = None, *, config: FitConfig | str | Path | dict | None = None, dataset: Dataset | None = None,
        **overrides: Any) -> Run:
    """Fit a transferred model and write its run directory. Returns the loaded `Run`.

    ``headstart.fit("photos/", model="timm:resnet18", strategy="linear")`` –
    keyword overrides are `FitConfig` fields; ``config`` may be a FitConfig,
    a dict or a YAML file. ``dataset`` passes an already-loaded `Dataset`.
    """
    t_start = time.perf_counter()
    if dataset is not None and data is None and not (config or overrides.get("data")):
        overrides["data"] = dataset.name
    cfg = _as_config(data, config, overrides)
    options_for(cfg)  # fail on a misspelled strategy or a bad option before any work
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    ds = dataset if dataset is not None else load_data(
        cfg.data, test=cfg.test, text_col=cfg.text_col, label_col=cfg.label_col, header=cfg.header, strict=cfg.strict,
        seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, train_size=cfg.train_size,
        labels_per_class=cfg.labels_per_class)
    user_lr = cfg.lr
    cfg = cfg.resolved(ds.modality, len(ds.train_idx))
    out = _prepare_out(cfg)
    with _removed_if_refused(out, fresh=not cfg.resume):  # a resumed folder is never removed
        cfg = dataclasses.replace(cfg, out=str(out))
        seed_everything(cfg.seed)
        backbone = build_backbone(cfg.model, weights=cfg.weights, pretrained=cfg.pretrained)
        if backbone.modality != ds.modality:
            raise ConfigError(f"option --model: {cfg.model} is {kind_of(backbone.modality)} but {cfg.data} holds {ds.modality}s")
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        predicted = predicted_for(cache_dir, ds.fingerprint(), backbone)  # before the pooling or training change it
        cfg = dataclasses.replace(cfg, pool=_set_pool(backbone, cfg))
        if user_lr is None and getattr(backbone, "default_lr", None):
            cfg = dataclasses.replace(cfg, lr=backbone.default_lr)  # e.g. from-scratch embeddings need a larger step
        if hasattr(backbone, "max_length"):
            backbone.max_length = cfg.max_length
        dump_config(out, {**cfg.to_dict(), "resume": False})
        head = make_head(ds.task, backbone.num_features, ds.num_classes, cfg.dropout)
        strategy = get_strategy(cfg.strategy)(cfg)
        ctx = FitContext(cfg=cfg, data=ds, backbone=backbone, head=head, run_dir=out, cache_dir=cache_dir)
        strategy.fit(ctx)

    # Evaluate once on the reported split; the selection split is reported separately (unless it was trained on).
    metrics: dict[str, Any] = {}
    for split, idx in (("test", ds.test_idx), ("val", ds.val_idx)):
        if len(idx) and not (split == "val" and strategy.fits_selection_split):
            probs = (head_outputs(head, ctx.features[idx]) if ctx.features is not None
                     else predict_outputs(backbone, head, [ds.items[i] for i in idx]))
            metrics[split] = compute_metrics(ds.y[idx], probs, ds.task, ds.classes)
    wall = time.perf_counter() - t_start
    metrics["fit"] = {"strategy": cfg.strategy, "model": cfg.model, **ctx.info, "wall_seconds": round(wall, 2),
                      "skipped_files": len(ds.skipped)}
    metrics["data"] = ds.summary()
    if predicted:
        metrics["predicted"] = predicted
    if ds.skipped:
        metrics["data"]["skipped_files"] = [{"file": f, "reason": r} for f, r in ds.skipped]
    save_model(out, backbone, head, ds.task, ds.classes, cfg.dropout)
    metrics.update(strategy.after_fit(ctx, metrics))
    write_history(out, ctx.history)
    write_json(out / "metrics.json", metrics)
    plot_learning_curves(ctx.history, out / "plots" / "learning_curves.png")
    if "test" in metrics:
        plot_confusion(metrics["test"]["confusion_matrix"], ds.classes, out / "plots" / "confusion_matrix.png",
                       "confusion matrix (held-out split)")
    write_report(out, cfg.to_dict(), metrics, ds.summary())
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    info(f"run written to {out}")
    return load_run(out)


def summary_rows(run: Run) -> list[tuple[str, str]]:
    """The closing summary table of a fit (CLI)."""
    m = run.metrics
    test, fit_info, data = m.get("test", {}), m.get("fit", {}), m.get("data", {})
    rows = [
        ("run", str(run.path)),
        ("data", f"{data.get('name')} ({data.get('modality')}, {data.get('task')}, {len(run.classes)} classes)"),
        ("examples train / select / report", f"{data.get('n_train')} / {data.get('n_val')} / {data.get('n_test')}"),
        ("model / strategy", f"{fit_info.get('model')} / {fit_info.get('strategy')}"),
    ]
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
        if k in test:
            rows.append((f"held-out {k.replace('_', ' ')}", f"{test[k]:.4f}"))
    if "predicted" in m:
        p = m["predicted"]
        score = p["scores"].get(p["by"])
        rows.append(("predicted by `headstart rank`", f"rank {p['rank']} of {p['of']}, {p['by']} {score:.4f}"
                     if score is not None else f"rank {p['rank']} of {p['of']}"))
    if "val" in m:
        rows.append(("selection-split accuracy", f"{m['val']['accuracy']:.4f}"))
    for k in ("kept_epoch", "epochs_run", "C", "cv_log_loss", "features_cached", "precision", "samples_per_second", "wall_seconds", "skipped_files"):
        if k in fit_info:
            rows.append((k.replace("_", " "), str(fit_info[k])))
    if "mfu" in fit_info:
        rows.append(("MFU (of this machine's matmul peak)", f"{100 * fit_info['mfu']:.1f}% ({fit_info['achieved_gflops']} of "
                     f"{fit_info['peak_gflops']} GFLOP/s {fit_info['peak_dtype']})"))
    return rows


__all__ = ["fit", "summary_rows"]
