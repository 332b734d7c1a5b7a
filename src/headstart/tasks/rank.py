"""`rank`: score candidate backbones on the target data before any full fine-tuning.

For each candidate: build it, extract (or reuse cached) features of the target
examples, then compute the requested scores on them (``headstart.transferability``).
Only the training part of the data is used (train + selection split): the
reported split stays untouched, so a later ``fit`` with the same seed is an
honest check of the prediction.

Which score recommends depends on what the user will do with the winner
(``goal``): for a frozen backbone (``linear``) LogME on the features is the
right signal; for full fine-tuning, frozen features are a poor guide (a
small network pretrained on other data can fine-tune better than a bigger one
whose frozen features look better), so the recommendation uses ``proxy``: the
accuracy of a short fine-tuning run (the real ``finetune`` strategy, a few
epochs on a capped subset of the training part) on a held-out slice of it.
See docs/design-notes.md for the measurements behind this choice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import transferability as tr
from .._io import atomic_write_text, prepare_output_dir
from .._progress import info, warn
from .._seed import seed_everything
from .._trust import trusting
from ..backbones import Backbone, build_backbone
from ..config import FitConfig
from ..data import Dataset, load_data, per_class_subset, stratified_holdout
from ..errors import ConfigError, HeadstartError, kind_of
from ..features import default_cache_dir, extract
from .fit import run_pipeline
from .rank_index import remember

METRICS = ("logme", "hscore", "leep", "nce", "knn", "linear", "proxy")
# The scores defined for labels that are not one class per example: LogME's evidence is per target column (a
# value, or a 0/1 label: You et al. 2021 cover regression), and the proxy is a real fit. The others are n/a.
EVERY_TASK = ("logme", "proxy")
NEEDS_SOURCE_HEAD = ("leep", "nce")
GOALS = {"finetune": "proxy", "linear": "logme"}
METRIC_HELP = {
    "logme": "LogME evidence per example (You et al. 2021)",
    "hscore": "H-score, shrunk covariance (Bao et al. 2019)",
    "leep": "LEEP, needs a source classifier (Nguyen et al. 2020)",
    "nce": "NCE, needs a source classifier (Tran et al. 2019)",
    "knn": "5-NN cross-validated accuracy",
    "linear": "logistic-regression probe, cross-validated accuracy",
    "proxy": "score (accuracy; micro-F1 multilabel; R² regression) after a short fine-tuning run on a held-out slice",
}


@dataclass(frozen=True)
class Candidate:
    """One backbone to score: a model string and optional local weights (``MODEL@WEIGHTS``)."""

    model: str
    weights: str | None = None

    @classmethod
    def parse(cls, text: str) -> Candidate:
        model, sep, weights = text.rpartition("@")
        if not sep or (weights.isdigit() and not Path(weights).is_file()):  # scratch:cnn@96 is a model's own input size
            return cls(text)
        if not model or not weights:
            raise ConfigError(f"option --models: {text!r} must look like MODEL or MODEL@WEIGHTS_FILE")
        if not Path(weights).expanduser().is_file():
            raise ConfigError(f"option --models: weights file {weights!r} of {model} does not exist")
        return cls(model, weights)

    @property
    def label(self) -> str:
        """Short display name: a py: factory by its function name, local weights by file name."""
        if not self.model.startswith("py:"):
            return f"{self.model}@{Path(self.weights).name}" if self.weights else self.model
        short = self.model.rsplit(":", 1)[-1]
        return f"{short}@{Path(self.weights).name}" if self.weights else f"{short} (random init)"


def _metric_list(metrics: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    if not names or names == ["all"]:
        return list(METRICS)
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise ConfigError(f"option --metric: unknown {', '.join(bad)}; choose from {', '.join(METRICS)} or all")
    return list(dict.fromkeys(names))


def _source_probs(backbone: Backbone, feats: np.ndarray) -> np.ndarray | None:
    head = backbone.source_head
    if head is None:
        return None
    with torch.inference_mode():
        logits = head(torch.as_tensor(np.asarray(feats), dtype=torch.float32))
        return torch.softmax(logits.float(), -1).numpy().astype(np.float64)


def proxy_split(y: np.ndarray, pool: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices for the fine-tuning proxy: 25% of each class held out, train capped per class."""
    rng = np.random.default_rng(seed + 7919)
    train, held = stratified_holdout(y, pool, 0.25, rng)
    return per_class_subset(y, train, per_class, rng), held  # ``y``: the strata (classes, labels, value bins)


def proxy_finetune(backbone: Backbone, ds: Dataset, pool: np.ndarray, *, epochs: int, per_class: int,
                   seed: int, batch_size: int = 32) -> dict[str, float]:
    """A short fit of the real ``finetune`` strategy (the fit pipeline) on part of ``pool``, scored on the rest.

    Changes ``backbone`` in place (build a fresh one for anything else).
    Returns the task's score (under ``accuracy``: accuracy for classes) and log-loss on the held-out slice, and
    the seconds it took.
    """
    t0 = time.perf_counter()
    train_idx, held_idx = proxy_split(ds.strata(), pool, per_class, seed)
    if len(held_idx) == 0:
        raise HeadstartError("proxy score: every class needs at least 2 training examples")
    sub = dataclasses.replace(ds, train_idx=train_idx, val_idx=np.array([], dtype=int), test_idx=held_idx)
    with tempfile.TemporaryDirectory(prefix="headstart-proxy-") as tmp:
        cfg = FitConfig(data=ds.name, strategy="finetune", seed=seed, epochs=epochs, batch_size=batch_size,
                        checkpoint_every=10**9, out=str(Path(tmp) / "run"), cache_dir=tmp)
        m = run_pipeline(cfg, dataset=sub, backbone=backbone, record=False).metrics["test"]
    return {"accuracy": m["score"], "log_loss": m["log_loss"], "seconds": time.perf_counter() - t0,
            "n_train": int(len(train_idx)), "n_held": int(len(held_idx))}


# name -> fn(features [N, D] float64, labels [N], source probabilities [N, Z] or None, seed)
_FEATURE_SCORES = {
    "logme": lambda f, y, p, seed: tr.logme(f, y),
    "hscore": lambda f, y, p, seed: tr.hscore(f, y),
    "leep": lambda f, y, p, seed: tr.leep(p, y),
    "nce": lambda f, y, p, seed: tr.nce(p, y),
    "knn": lambda f, y, p, seed: tr.knn_accuracy(f, y, seed=seed),
    "linear": lambda f, y, p, seed: tr.linear_probe_accuracy(f, y, seed=seed),
}


def rank(
    data: str | Path | Dataset,
    models: list[str] | tuple[str, ...],
    *,
    metrics: str | list[str] = "all",
    goal: str = "finetune",
    seed: int = 0,
    test: str | None = None,
    text_col: str | list[str] | None = None,
    label_col: str | list[str] | None = None,
    task_type: str = "auto",
    header: str = "auto",
    test_fraction: float = 0.2,
    proxy_epochs: int = 2,
    proxy_per_class: int = 200,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    trust_code: bool | str | None = None,
) -> Any:
    """Rank candidate backbones for ``data`` by transferability, before fine-tuning any of them.

    Only the training part of ``data`` is scored (the split of `fit` with the same ``seed``), so a later fit
    of the winner is an honest check of the ranking.

    Args:
        data: As in `fit`, or a `Dataset`.
        models: Model strings, each optionally ``MODEL@WEIGHTS_FILE``; ``run:DIR`` for a model headstart trained.
        metrics: ``"all"`` or some of logme, hscore, leep, nce, knn, linear, proxy (comma-separated or a list).
        goal: What the winner is for: ``"finetune"`` ranks by ``proxy``, ``"linear"`` by ``logme`` (the first
            requested metric when that one is not requested).
        seed: The split's seed.
        test: A separate reported file (never scored here).
        text_col: Text column(s) of a table.
        label_col: Label column(s) of a table.
        task_type: ``auto``, binary, multiclass, multilabel or regression.
        header: Whether a table has a header row: ``auto``, ``yes``, ``no``.
        test_fraction: The reported part set aside (and never scored) when there is no ``test``.
        proxy_epochs: Epochs of the short fine-tuning proxy.
        proxy_per_class: At most this many training examples per class for the proxy.
        batch_size: Examples per forward pass.
        cache_dir: The feature cache (default ``runs/.cache``).
        out: Folder for rank.json, rank.csv, rank.png and report.html (default ``runs/rank-<data>``).
        overwrite: Replace an existing ranking folder.
        trust_code: Whether a ``run:`` candidate built by a ``py:`` factory may import it (see `load_run`).

    Returns:
        A pandas DataFrame, best first: one column per metric (higher is better; NaN where a metric cannot
        apply, such as LEEP without a source classifier), ``dim``, ``params``, ``extract_s`` (0 when cached),
        ``score_s`` and ``rank``. ``df.attrs`` holds ``recommended`` (the row label), ``recommended_model`` and
        ``recommended_weights`` (what to pass to `fit`), ``by``, ``path`` and ``seconds``.

    Examples:
        >>> import headstart
        >>> table = headstart.rank("demo-text", ["minilm", "scratch:bow"], metrics="logme,knn", goal="linear")
        >>> table.attrs["recommended_model"]
        'minilm'
    """
    import pandas as pd

    t_start = time.perf_counter()
    if goal not in GOALS:
        raise ConfigError(f"option --goal: {goal!r} is unknown; choose {' or '.join(GOALS)}")
    names = _metric_list(metrics)
    by = GOALS[goal] if GOALS[goal] in names else names[0]
    cands = [c if isinstance(c, Candidate) else Candidate.parse(str(c)) for c in models]
    if not cands:
        raise ConfigError("option --models: give at least one candidate backbone")
    if len(set(cands)) != len(cands):
        raise ConfigError("option --models: a candidate is listed twice")
    ds = data if isinstance(data, Dataset) else load_data(
        data, test=test, text_col=text_col, label_col=label_col, task_type=task_type, header=header, seed=seed,
        test_fraction=test_fraction)
    classes = ds.task in ("binary", "multiclass")
    if not classes and by not in EVERY_TASK:
        by = next((m for m in names if m in EVERY_TASK), by)
    pool = np.sort(np.concatenate([ds.train_idx, ds.val_idx]))
    y = ds.y[pool]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out_dir = prepare_output_dir(out, overwrite=overwrite, markers=("rank.json",), what="a headstart ranking") if out else None
    rows, fingerprints = [], {}
    for cand in cands:
        info(f"candidate {cand.label}")
        t0 = time.perf_counter()
        seed_everything(seed)  # as `fit` does: a random-init candidate is the same network there
        with trusting(trust_code):
            backbone = build_backbone(cand.model, weights=cand.weights, pretrained=True)
        if backbone.modality != ds.modality:
            raise ConfigError(f"option --models: {cand.model} is {kind_of(backbone.modality)} but the data holds {ds.modality}s")
        fingerprints[cand.label] = backbone.fingerprint
        feats, finfo = extract(backbone, ds.items, ds.fingerprint(), folder, batch_size=batch_size, source=ds.name)
        part = np.asarray(feats[pool])
        probs = _source_probs(backbone, part)
        feats = part.astype(np.float64)
        row: dict[str, Any] = {"candidate": cand.label, "model": cand.model, "weights": cand.weights,
                               "dim": int(feats.shape[1]), "params": int(sum(p.numel() for p in backbone.parameters())),
                               "source_classes": int(probs.shape[1]) if probs is not None else 0,
                               "extract_s": 0.0 if finfo["cached"] else round(finfo["seconds"], 2)}
        t1 = time.perf_counter()
        for name in names:
            if name == "proxy":
                continue
            if (name in NEEDS_SOURCE_HEAD and probs is None) or (not classes and name not in EVERY_TASK):
                row[name] = float("nan")
                continue
            row[name] = tr.logme(feats, y, regression=True) if name == "logme" and not classes else \
                _FEATURE_SCORES[name](feats, y, probs, seed)
        row["score_s"] = round(time.perf_counter() - t1, 2)
        if "proxy" in names:
            p = proxy_finetune(backbone, ds, pool, epochs=proxy_epochs, per_class=proxy_per_class, seed=seed)
            row["proxy"], row["proxy_log_loss"], row["proxy_s"] = p["accuracy"], p["log_loss"], round(p["seconds"], 2)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
    if not classes and set(names) - set(EVERY_TASK):
        warn(f"a {ds.task} target: {', '.join(n for n in names if n not in EVERY_TASK)} score classes and are shown as n/a")
    elif any(math.isnan(r.get(n, 0.0)) for r in rows for n in NEEDS_SOURCE_HEAD if n in names):
        missing = [r["candidate"] for r in rows if r["source_classes"] == 0]
        warn(f"LEEP/NCE need the source model's classifier; none for: {', '.join(missing)} (shown as n/a)")
    df = pd.DataFrame(rows)
    key = df[by].fillna(-np.inf)
    tie = df["logme"].fillna(-np.inf) if "logme" in df else 0
    df = df.assign(_k=key, _t=tie).sort_values(["_k", "_t"], ascending=False).drop(columns=["_k", "_t"])
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df = df.set_index("candidate")
    seconds = round(time.perf_counter() - t_start, 2)
    top = df.iloc[0]
    df.attrs.update({"recommended": df.index[0], "recommended_model": top["model"],
                     "recommended_weights": top["weights"] if isinstance(top["weights"], str) else None, "by": by, "goal": goal, "seconds": seconds,
                     "path": str(out_dir) if out_dir else None, "metrics": names})
    if out_dir is not None:
        _write_rank(out_dir, df, ds, pool)
        remember(folder, ds.fingerprint(), _records(df), df.attrs, fingerprints, out_dir)
    return df


def default_out(data: str | Path) -> Path:
    """runs/rank-<data name>."""
    return Path("runs") / f"rank-{Path(str(data).rstrip('/')).stem or data}"


def _records(df: Any) -> list[dict[str, Any]]:
    out = []
    for cand, r in df.iterrows():
        rec = {"candidate": cand}
        for k, v in r.items():
            rec[k] = None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v)
        out.append(rec)
    return out


def _write_rank(out_dir: Path, df: Any, ds: Dataset, pool: np.ndarray) -> None:
    from ..report import plot_rank, write_rank_report

    payload = {"data": ds.name, "n_examples": int(len(pool)), "classes": ds.classes, **df.attrs,
               "metric_help": {m: METRIC_HELP[m] for m in df.attrs["metrics"]}, "candidates": _records(df),
               "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(out_dir / "rank.json", json.dumps(payload, indent=2))
    atomic_write_text(out_dir / "rank.csv", df.to_csv())
    plot_rank(df, df.attrs["metrics"], out_dir / "rank.png")
    write_rank_report(out_dir, payload)


__all__ = ["Candidate", "METRICS", "proxy_finetune", "rank"]
