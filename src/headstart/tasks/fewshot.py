"""``headstart fewshot``: every few-shot method on the same meta-test episodes, beside the frozen baselines.

For each ``--shots`` K: the classes are split once (``--seed``, ``--class-split``), the
``--episodes`` meta-test episodes are drawn once (`data.episodes`), and every method
is scored on exactly those:

``prototypes``  class means of the frozen backbone's features (no training; Snell et al.'s
                classifier on a pretrained network);
``linear``      a logistic regression fitted on each episode's support features (Tian et al.,
                ECCV 2020: unit-length features, L2-regularised);
``protonet``    `protonet` fitted episodically on the meta-train classes;
``maml`` ``fomaml`` ``anil``   `maml` with that ``--maml-variant``.

The frozen baselines come first in the table because every meta-learning result
is read against them (Chen et al., ICLR 2019). Writes ``fewshot.csv``/``.json``,
``fewshot.png`` (accuracy with 95% intervals) and ``report.html``; each trained
method's run is in ``runs/<method>-<K>shot`` and resumes like any fit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text, prepare_output_dir
from .._progress import info, track
from .._trust import trusting
from ..config import FitConfig
from ..data import episodes, load_data, mean_ci95, split_classes
from ..errors import ConfigError
from ..training.strategies import options_for
from .compare import options_applying
from .fit import backbone_for, run_pipeline

FROZEN = ("prototypes", "linear")
TRAINED = {"protonet": ("protonet", {}), "maml": ("maml", {"maml_variant": "maml"}),
           "fomaml": ("maml", {"maml_variant": "fomaml"}), "anil": ("maml", {"maml_variant": "anil"})}
METHODS = (*FROZEN, *TRAINED)


def parse_list(text: str | list[Any], what: str, cast: Any = str) -> list[Any]:
    items = [v for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    try:
        return [cast(str(v).strip()) for v in items]
    except ValueError:
        raise ConfigError(f"option --{what}: {text!r} must be a comma-separated list") from None


def fewshot(data: str, *, methods: str | list[str] = ",".join(METHODS), ways: int = 5, shots: str | list[int] = "1,5",
            episodes_n: int = 600, queries: int = 15, out: str | Path | None = None, overwrite: bool = False,
            resume: bool = False, trust_code: bool | str | None = None, **fit_options: Any) -> list[dict[str, Any]]:
    """Score ``methods`` on the same ``episodes_n`` meta-test episodes per shot count; one row per (method, shots).

    ``fit_options``: `FitConfig` fields and episode options for the trained methods (``model``, ``epochs``,
    ``train_episodes``, ``class_split``, ``inner_steps`` ...), and ``seed``, which also fixes the class split.
    """
    from ..report import plot_fewshot, write_fewshot_report

    names = parse_list(methods, "methods")
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"option --methods: {', '.join(unknown)} unknown; choose from {', '.join(METHODS)}")
    ks = parse_list(shots, "shots", int)
    for k in ("out", "strategy", "shots", "ways", "queries", "eval_episodes", "maml_variant", "data"):
        if k in fit_options:
            raise ConfigError(f"fewshot: option {k} is set per method; drop it")
    common = {"ways": ways, "queries": queries, "eval_episodes": episodes_n}
    cfgs = {(m, k): FitConfig.from_dict({"data": str(data), "strategy": TRAINED[m][0], **common, "shots": k,
                                         **options_applying(TRAINED[m][0], fit_options), **TRAINED[m][1]})
            for m in names if m in TRAINED for k in ks}
    for cfg in cfgs.values():  # every option checked before the first fit
        options_for(cfg)
    base = FitConfig.from_dict({"data": str(data), "strategy": "protonet", **common,
                                **options_applying("protonet", fit_options)})
    opts = options_for(base)
    folder = prepare_output_dir(out or Path("runs") / f"fewshot-{Path(str(data).rstrip('/')).stem}", overwrite=overwrite,
                                resume=resume, markers=("fewshot.json",), what="a headstart few-shot comparison", options="--out")
    record = {"data": str(data), "methods": names, "ways": ways, "shots": ks, "episodes": episodes_n, "queries": queries,
              "options": json.loads(json.dumps(fit_options, default=str)), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    ds = load_data(base.data, **base.load_kwargs())
    parts = split_classes(ds.classes, ways, base.seed, opts.class_split, opts.names(opts.meta_test_classes),
                          opts.names(opts.meta_val_classes))
    record["classes"] = {k: [ds.classes[c] for c in v] for k, v in parts.items()}
    rows: list[dict[str, Any]] = []
    frozen = [m for m in names if m in FROZEN]
    if frozen:
        rows += _frozen_rows(base, ds, parts["test"], frozen, ks, ways, queries, episodes_n)
        _write(folder, record, rows)
    for (m, k), cfg in cfgs.items():
        run_dir = folder / "runs" / f"{m}-{k}shot"
        info(f"fewshot: {m}, {ways}-way {k}-shot")
        if (run_dir / "metrics.json").is_file():
            metrics = json.loads((run_dir / "metrics.json").read_text())
        else:
            again = (run_dir / "checkpoints" / "last.ckpt").is_file()
            cfg = FitConfig.from_dict({**cfg.to_dict(), "out": str(run_dir), "overwrite": not again, "resume": again})
            with trusting(trust_code):
                metrics = run_pipeline(cfg, dataset=ds).metrics
        t = metrics["test"]
        rows.append({"method": m, "shots": k, "accuracy": t["accuracy"], "ci95": t["ci95"], "episodes": t["episodes"],
                     "wall_seconds": metrics["fit"]["wall_seconds"], "train_seconds": metrics["fit"].get("train_seconds"),
                     "score_seconds": t.get("seconds"), "run": str(run_dir)})
        _write(folder, record, rows)
    plot_fewshot(rows, folder / "fewshot.png", ways)
    write_fewshot_report(folder, record, rows)
    return rows


def _frozen_rows(cfg: FitConfig, ds: Any, test_classes: list[int], methods: list[str], ks: list[int], ways: int,
                 queries: int, n: int) -> list[dict[str, Any]]:
    """The baselines on the pretrained backbone's cached features: no training at all."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from ..features import default_cache_dir, extract
    from ..run._support import prototype_logits, prototypes

    t0 = time.perf_counter()
    model = cfg.model_for(ds.modality)
    backbone = backbone_for(FitConfig.from_dict({**cfg.to_dict(), "model": model}), ds)
    backbone.eval()
    feats, _ = extract(backbone, ds.items, ds.fingerprint(), cfg.cache_dir or default_cache_dir(), source=str(cfg.data))
    extract_seconds = time.perf_counter() - t0
    rows_idx = np.flatnonzero(np.isin(ds.y, test_classes))
    f = torch.from_numpy(np.array(feats))  # the cache is a read-only memory map
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    out = []
    for k in ks:
        eps = episodes(ds.y, rows_idx, test_classes, ways, k, queries, n, cfg.seed)
        for m in methods:
            t1, accs = time.perf_counter(), []
            for ep in track(eps, len(eps), f"{m}, {k}-shot", min_total=50):
                if m == "prototypes":
                    logits = prototype_logits(f[ep.query], prototypes(f[ep.support], torch.as_tensor(ep.support_y), ways),
                                              "euclidean").numpy()
                else:
                    clf = LogisticRegression(C=10.0, max_iter=1000).fit(unit[ep.support], ep.support_y)
                    logits = clf.decision_function(unit[ep.query])
                accs.append(float((logits.argmax(-1) == ep.query_y).mean()))
            mean, ci = mean_ci95(accs)
            seconds = time.perf_counter() - t1
            out.append({"method": m, "shots": k, "accuracy": mean, "ci95": ci, "episodes": len(eps),
                        "wall_seconds": round(seconds + extract_seconds, 2),  # what this method alone costs
                        "train_seconds": 0.0, "score_seconds": round(seconds, 2), "run": ""})
    return out


def _write(folder: Path, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    atomic_write_text(folder / "fewshot.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_write_text(folder / "fewshot.json", json.dumps({**record, "rows": rows}, indent=2, default=str))


__all__ = ["METHODS", "fewshot"]
