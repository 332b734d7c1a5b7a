"""Honest evaluation benchmark (issue 20): tune against the default, cross-validation, calibration, the leakage check.

    python benchmarks/evaluation.py [--only tune,tune-cv,cv,calibration,leakage] [--trials 20] [--out /tmp/evaluation]

* tune: `headstart tune hymenoptera --strategy finetune --trials 20` with the shared MobileNetV1 x0.25 (objective:
  selection-split log-loss, median pruning), then the best and the default configurations each refitted with
  3 seeds and scored on the reported split (hymenoptera's val/, 153 images).
* tune-cv: the same search with `--cv 5`: each trial scored by the mean log-loss of 5 folds of the training part.
* cv: `--cv 5` of `linear` and `finetune` on the sign-language digits (2,062 images): the folds run on the training
  part (80%), the reported 20% is scored once by the run itself.
* calibration: the held-out ECE of `finetune` (hymenoptera, sign digits) and what the temperature fitted on the
  selection split would make of it.
* leakage: the cost of the copy check per data set, and what it finds.

Prints the markdown of docs/benchmarks.md ("Honest evaluation").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
HYM = SHARED / "images" / "hymenoptera"
SIGN = SHARED / "images" / "sign_language_digits"
MOBILENET = {"model": f"py:{HERE / 'factories.py'}:mobilenet_v1_025",
             "weights": str(SHARED / "weights" / "mobilenetv1_025_imagenet" / "model_best.pth.tar")}


def emit(text: str = "") -> None:
    print(text, flush=True)


def pm(s: dict) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def bench_tune(out: Path, trials: int) -> None:
    from headstart.tasks.tune import tune

    t0 = time.perf_counter()
    r = tune(str(HYM), trials=trials, strategy="finetune", out=out / "tune-hym", refit_seeds=3, **MOBILENET)
    wall = time.perf_counter() - t0
    states = [t["state"] for t in r["trials"]]
    emit(f"### `tune`: {trials} trials of `finetune` on hymenoptera, MobileNetV1 x0.25")
    emit()
    emit(f"`headstart tune {HYM.name} --strategy finetune --trials {trials} --refit-seeds 3 --model py:benchmarks/factories.py:"
         "mobilenet_v1_025 --weights .../model_best.pth.tar`")
    emit()
    emit("| configuration | held-out accuracy, mean ± std over seeds 0,1,2 | per seed | selection log-loss (seed 0) | refit wall s |")
    emit("|---|---:|---|---:|---:|")
    for name, rec in (("best trial", r["refit"]), ("default", r["default"])):
        s = rec["seeds"]
        emit(f"| {name} | {pm(s)} | {', '.join(f'{x:.4f}' for x in s['scores'])} | "
             f"{rec['val'].get('log_loss', float('nan')):.4f} | {rec['wall_seconds']:.0f} |")
    emit()
    emit(f"Best values: {json.dumps(r['best']['params'])}. Importances (fANOVA): {json.dumps(r['importances'])}.")
    emit(f"Trials: {states.count('COMPLETE')} finished, {states.count('PRUNED')} pruned, {states.count('FAIL')} failed; "
         f"search {r['seconds']:.0f} s, refits {r['refit_seconds']:.0f} s, whole command {wall:.0f} s.")
    emit()


def bench_tune_cv(out: Path, trials: int) -> None:
    """The same search with a 5-fold cross-validated objective (no pruning), refitted the same way."""
    from headstart.tasks.tune import tune

    t0 = time.perf_counter()
    r = tune(str(HYM), trials=trials, strategy="finetune", out=out / "tune-hym-cv", refit_seeds=3, cv=5, **MOBILENET)
    wall = time.perf_counter() - t0
    emit(f"### `tune --cv 5`: the same {trials} trials scored by 5-fold cross-validation on the training part")
    emit()
    emit("| configuration | held-out accuracy, mean ± std over seeds 0,1,2 | per seed | refit wall s |")
    emit("|---|---:|---|---:|")
    for name, rec in (("best trial", r["refit"]), ("default", r["default"])):
        s = rec["seeds"]
        emit(f"| {name} | {pm(s)} | {', '.join(f'{x:.4f}' for x in s['scores'])} | {rec['wall_seconds']:.0f} |")
    emit()
    emit(f"Best values: {json.dumps(r['best']['params'])}; its CV log-loss {r['best']['value']:.4f}. Importances: "
         f"{json.dumps(r['importances'])}. Search {r['seconds']:.0f} s, refits {r['refit_seconds']:.0f} s, whole command "
         f"{wall:.0f} s.")
    emit()


def bench_cv(out: Path) -> None:
    import headstart

    emit("### 5-fold cross-validation on the sign-language digits, MobileNetV1 x0.25")
    emit()
    emit("`headstart fit sign_language_digits --strategy S --cv 5 --model py:benchmarks/factories.py:mobilenet_v1_025 "
         "--weights .../model_best.pth.tar`")
    emit()
    emit("| strategy | CV accuracy, mean ± std (5 folds) | 95% interval | per fold | held-out accuracy of the run (n) | wall s |")
    emit("|---|---:|---|---|---:|---:|")
    for strategy in ("linear", "finetune"):
        t0 = time.perf_counter()
        run = headstart.fit(str(SIGN), strategy=strategy, cv=5, out=str(out / f"cv-sign-{strategy}"), overwrite=True,
                            **MOBILENET)
        wall = time.perf_counter() - t0
        cv = run.metrics["cv"]
        s = cv["figures"]["accuracy"]
        folds = ", ".join(f"{r['accuracy']:.3f}" for r in cv["rows"])
        emit(f"| {strategy} | {pm(s)} | {s['ci95_low']:.4f} to {s['ci95_high']:.4f} | {folds} | "
             f"{run.metrics['test']['accuracy']:.4f} ({run.metrics['test']['n']}) | {wall:.0f} |")
    emit()


def bench_calibration(out: Path) -> None:
    import headstart

    emit("### Calibration of `finetune` (held-out split), and the temperature fitted on the selection split")
    emit()
    emit("| data | held-out accuracy | ECE | log-loss | temperature | ECE after | log-loss after |")
    emit("|---|---:|---:|---:|---:|---:|---:|")
    for name, data in (("hymenoptera", HYM), ("sign digits", SIGN)):
        folder = out / "cv-sign-finetune" if name == "sign digits" and (out / "cv-sign-finetune" / "metrics.json").is_file() \
            else None
        run = headstart.load(folder, trust_code=True) if folder else headstart.fit(str(data), strategy="finetune", out=str(out / f"cal-{name}"),
                                                                  overwrite=True, **MOBILENET)
        c, t = run.metrics["calibration"], run.metrics["calibration"].get("temperature", {})
        emit(f"| {name} | {run.metrics['test']['accuracy']:.4f} | {100 * c['ece']:.1f}% | {c['log_loss']:.4f} | "
             f"{t.get('value', float('nan')):.2f} | {100 * t.get('ece', float('nan')):.1f}% | {t.get('log_loss', float('nan')):.4f} |")
    emit()


def bench_leakage() -> None:
    from headstart.data import load_data

    emit("### The copy check (exact content hash; perceptual hash confirmed by a 16x16 thumbnail; normalised text)")
    emit()
    emit("| data | examples | load_data s | of which the check, s | exact | near |")
    emit("|---|---:|---:|---:|---:|---:|")
    for name, src, kw in (("hymenoptera", HYM, {}), ("sign digits", SIGN, {}),
                          ("SST-2 train + dev", SHARED / "text" / "sst2" / "train.tsv", {"test": SHARED / "text" / "sst2" / "dev.tsv"})):
        t0 = time.perf_counter()
        ds = load_data(src, **kw)
        wall = time.perf_counter() - t0
        lk = ds.leakage
        emit(f"| {name} | {len(ds.items):,} | {wall:.1f} | {lk['seconds']:.2f} | {lk['exact']} | {lk['near']} |")
    emit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="tune,cv,calibration,leakage")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--out", default="/tmp/evaluation")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HEADSTART_CACHE_DIR", str(out / "cache"))
    os.environ.setdefault("MPLCONFIGDIR", str(out / ".mpl"))
    emit(f"<!-- {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, python {sys.version.split()[0]} -->")
    for part in a.only.split(","):
        {"tune": lambda: bench_tune(out, a.trials), "tune-cv": lambda: bench_tune_cv(out, a.trials), "cv": lambda: bench_cv(out), "calibration": lambda: bench_calibration(out),
         "leakage": bench_leakage}[part]()


if __name__ == "__main__":
    main()
