"""`rank`: score candidate backbones on the target data before any full fine-tuning.

For each candidate: build it, extract (or reuse cached) features of the target
examples, then compute the requested scores on them (``headstart.transferability``).
Only the training part of the data is used (train + selection split): the
reported split stays untouched, so a later ``fit`` with the same seed is an
honest check of the prediction.

Which score recommends depends on what the user will do with the winner (``goal``): for a frozen backbone
(``linear``) LogME on the features is the right signal; for full fine-tuning, NCTI (how far the features are
from the neural collapse fine-tuning ends in), scored on at most 50 examples per class. Both were chosen on
the transferability benchmark (docs/benchmarks.md; docs/design-notes.md, "Ranking for fine-tuning"). The
``proxy`` (a short run of the real ``finetune`` strategy on part of the training data, scored on the rest)
stays available; it was no better there and costs more.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from ..features import cached_rows, default_cache_dir, extract
from .fit import run_pipeline
from .rank_index import remember

METRICS = ("logme", "hscore", "leep", "nce", "knn", "linear", "sfda", "ncti", "etran", "transrate", "gbc", "pactran",
           "proxy")
# The scores defined for labels that are not one class per example: LogME's evidence is per target column (a
# value, or a 0/1 label: You et al. 2021 cover regression), and the proxy is a real fit. The others are n/a.
EVERY_TASK = ("logme", "proxy")
NEEDS_SOURCE_HEAD = ("leep", "nce")
# Scores whose terms are normalised over the candidate pool before they are summed (their papers' definition).
POOLED = {"ncti": (tr.ncti_parts, tr.NCTI), "etran": (tr.etran_parts, tr.ETRAN)}
# What recommends, per goal. Fine-tuning: NCTI on at most 50 examples per class, chosen on the issue-24 benchmark
# (docs/benchmarks.md: three targets, six candidates each, three seeds) for the best mean Kendall tau against
# fine-tuned accuracy within 5% of the time of fine-tuning every candidate; the proxy was no more accurate there
# and cost 8-11%. A frozen backbone: LogME.
GOALS = {"finetune": "ncti", "linear": "logme"}
PER_CLASS = 50
METRIC_HELP = {
    "logme": "LogME evidence per example (You et al. 2021)",
    "hscore": "H-score, shrunk covariance (Bao et al. 2019)",
    "leep": "LEEP, needs a source classifier (Nguyen et al. 2020)",
    "nce": "NCE, needs a source classifier (Tran et al. 2019)",
    "knn": "5-NN cross-validated accuracy",
    "linear": "logistic-regression probe, cross-validated accuracy",
    "sfda": "SFDA, self-challenging Fisher discriminant (Shao et al. 2022)",
    "ncti": "NCTI, distance to neural collapse, normalised over the candidates (Wang et al. 2023)",
    "etran": "ETran, energy + LDA terms, normalised over the candidates (Gholami et al. 2023)",
    "transrate": "TransRate, coding rate minus its class-conditional part (Huang et al. 2022)",
    "gbc": "GBC, minus the Bhattacharyya overlap of class Gaussians (Pandy et al. 2022)",
    "pactran": "PACTran-Gaussian, minus a PAC-Bayes bound (Ding et al. 2022)",
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
        logits = head(torch.as_tensor(np.asarray(feats), dtype=torch.float32)).float()
        if logits.shape[-1] == 1:  # a binary head (one logit, a sigmoid): its two classes' probabilities
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p], dim=-1).numpy().astype(np.float64)
        return torch.softmax(logits, -1).numpy().astype(np.float64)


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
    "sfda": lambda f, y, p, seed: tr.sfda(f, y),
    "transrate": lambda f, y, p, seed: tr.transrate(f, y),
    "gbc": lambda f, y, p, seed: tr.gbc(f, y),
    "pactran": lambda f, y, p, seed: tr.pactran(f, y),
}


def rank(
    data: str | Path | Dataset,
    models: list[str] | tuple[str, ...],
    *,
    metrics: str | list[str] = "auto",
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
    train_size: int | None = None,
    per_class: int | None = PER_CLASS,
    intervals: int = 20,
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
        metrics: ``"auto"`` (the goal's score and LogME), ``"all"``, or some of logme, hscore, leep, nce, knn,
            linear, sfda, ncti, etran, transrate, gbc, pactran, proxy (comma-separated or a list).
        goal: What the winner is for: ``"finetune"`` ranks by ``ncti``, ``"linear"`` by ``logme`` (the first
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
        train_size: Keep a stratified subset of this many training examples (as `fit`'s ``train_size``).
        per_class: Score at most this many examples per class (a seeded stratified sample of the training part);
            only those are run through each candidate. ``None`` or 0: all of them.
        intervals: Bootstrap rounds for the interval of the recommending score (0: none; the proxy never has
            one, it is a training run).
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
    names = _metric_list([GOALS[goal], "logme"] if metrics == "auto" else metrics)
    by = GOALS[goal] if GOALS[goal] in names else names[0]
    cands = [c if isinstance(c, Candidate) else Candidate.parse(str(c)) for c in models]
    if not cands:
        raise ConfigError("option --models: give at least one candidate backbone")
    if len(set(cands)) != len(cands):
        raise ConfigError("option --models: a candidate is listed twice")
    ds = data if isinstance(data, Dataset) else load_data(
        data, test=test, text_col=text_col, label_col=label_col, task_type=task_type, header=header, seed=seed,
        test_fraction=test_fraction, train_size=train_size)
    classes = ds.task in ("binary", "multiclass")
    if not classes and by not in EVERY_TASK:
        by = next((m for m in names if m in EVERY_TASK), by)
    pool = np.sort(np.concatenate([ds.train_idx, ds.val_idx]))
    if per_class:
        if per_class < 2:
            raise ConfigError(f"option --per-class: {per_class} must be at least 2")
        pool = np.sort(per_class_subset(ds.strata(), pool, per_class, np.random.default_rng(seed + 104729)))
    y = ds.y[pool]
    data_key = ds.fingerprint()
    items, pool_key = ds.take(pool), _subset_key(data_key, pool)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out_dir = prepare_output_dir(out, overwrite=overwrite, markers=("rank.json",), what="a headstart ranking") if out else None
    rows, fingerprints, pooled, boot = [], {}, {m: [] for m in POOLED if m in names}, {}
    for cand in cands:
        info(f"candidate {cand.label}")
        t0 = time.perf_counter()
        seed_everything(seed)  # as `fit` does: a random-init candidate is the same network there
        with trusting(trust_code):
            backbone = build_backbone(cand.model, weights=cand.weights, pretrained=True)
        if backbone.modality != ds.modality:
            raise ConfigError(f"option --models: {cand.model} is {kind_of(backbone.modality)} but the data holds {ds.modality}s")
        fingerprints[cand.label] = backbone.fingerprint
        if names == ["proxy"]:  # the proxy alone trains on the examples themselves: no features to extract
            feats, finfo = np.zeros((len(pool), backbone.num_features)), {"cached": True, "seconds": 0.0}
        elif (whole := cached_rows(backbone, data_key, len(ds.items), pool, folder)) is not None:
            feats, finfo = whole, {"cached": True, "seconds": 0.0}  # the whole data's entry: its scored rows
        else:  # extract only the examples scored
            feats, finfo = extract(backbone, items, pool_key, folder, batch_size=batch_size, source=ds.name)
            feats = np.array(feats, dtype=np.float64)  # a copy: the cache entry is a read-only memory map
        probs = _source_probs(backbone, feats)
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
            elif name in POOLED:
                pooled[name].append(POOLED[name][0](feats, y))
            else:
                row[name] = tr.logme(feats, y, regression=True) if name == "logme" and not classes else \
                    _FEATURE_SCORES[name](feats, y, probs, seed)
        if intervals and by != "proxy" and classes and not (by in NEEDS_SOURCE_HEAD and probs is None):
            fn = POOLED[by][0] if by in POOLED else (lambda f, t: _FEATURE_SCORES[by](f, t, None, seed))
            boot[cand.label] = tr.bootstrap_values(fn, feats, y, rounds=intervals, seed=seed)
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
    for name, parts in pooled.items():
        if len(parts) != len(rows):  # not a class target: the terms were never computed (n/a above)
            continue
        for row, value in zip(rows, tr.combine_parts(parts, POOLED[name][1])):
            row[name] = float(value)
    if by in POOLED and len(boot) == len(rows):
        # every candidate saw the same half-samples (same seed, same labels): normalise each round over the pool
        rounds = zip(*(boot[r["candidate"]] for r in rows))
        per_round = np.array([tr.combine_parts(list(parts), POOLED[by][1]) for parts in rounds])  # [rounds, candidates]
        boot = {r["candidate"]: per_round[:, i].tolist() for i, r in enumerate(rows)}
    for row in rows:
        values = boot.get(row["candidate"]) if by not in POOLED or len(boot) == len(rows) else None
        row["low"], row["high"] = tr.percentile_interval(row[by], values) if values is not None else (float("nan"), float("nan"))
    df = pd.DataFrame(rows)
    key = df[by].fillna(-np.inf)
    tie = df["logme"].fillna(-np.inf) if "logme" in df else 0
    df = df.assign(_k=key, _t=tie).sort_values(["_k", "_t"], ascending=False).drop(columns=["_k", "_t"])
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df = df.set_index("candidate")
    seconds = round(time.perf_counter() - t_start, 2)
    top = df.iloc[0]
    df.attrs.update({"overlap": _overlap(df, by, len(pool), len(ds.train_idx), ds.modality),
                     "recommended": df.index[0], "recommended_model": top["model"],
                     "recommended_weights": top["weights"] if isinstance(top["weights"], str) else None, "by": by, "goal": goal, "seconds": seconds,
                     "path": str(out_dir) if out_dir else None, "metrics": names})
    if out_dir is not None:
        _write_rank(out_dir, df, ds, pool)
        remember(folder, data_key, _records(df), df.attrs, fingerprints, out_dir)
    return df


def default_out(data: str | Path) -> Path:
    """runs/rank-<data name>."""
    return Path("runs") / f"rank-{Path(str(data).rstrip('/')).stem or data}"


def _subset_key(data_fingerprint: str, idx: np.ndarray) -> str:
    """The feature-cache key of some of a data set's examples."""
    h = hashlib.sha256(data_fingerprint.encode())
    h.update(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
    return h.hexdigest()[:20]


def _overlap(df: Any, by: str, n_scored: int, n_train: int, modality: str) -> str | None:
    """What to say when the top two candidates' bootstrap intervals overlap (None when they do not)."""
    if len(df) < 2 or "low" not in df:
        return None
    a, b = df.iloc[0], df.iloc[1]
    if not (np.isfinite(a["low"]) and np.isfinite(b["high"])) or a["low"] > b["high"]:
        return None
    msg = (f"{df.index[0]} and {df.index[1]} overlap: their 90% bootstrap intervals of {by} meet, so these examples "
           "cannot tell them apart by it. Fine-tuning both settles it")
    secs = [float(r["extract_s"]) for r in (a, b)]
    if all(x > 0 for x in secs) and n_scored:
        # one forward + backward pass is about 3 forward passes; the extraction timed one forward pass per example
        epochs = FitConfig(data="-").resolved(modality, n_train).epochs
        est = 3 * epochs * n_train * sum(secs) / n_scored
        msg += f": about {est:.0f} s for the two here (`fit --strategy finetune`, {epochs} epochs, estimated from the extraction time)"
    return msg + "."


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
