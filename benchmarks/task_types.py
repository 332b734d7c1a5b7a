"""Task types benchmark (issue 17): multilabel GoEmotions and regression on STS Benchmark sentence pairs.

    python benchmarks/task_types.py [--datasets goemotions,sts] [--strategies linear,finetune] [--out /tmp/task-types]

goemotions: the raw files as they are (no header, text, comma-separated emotion ids): dev.tsv (5,426) is the
training data (a selection split is carved from it), test.tsv (5,427) the reported split; 28 labels, detected.
sts: sts-train.csv (5,749 pairs) to train, sts-test.csv (1,379) reported; Spearman on test is the usual figure.
The files are tab-separated and some lines carry two extra source fields: the script keeps the first seven.
Every model is all-MiniLM-L6-v2 (`minilm`), seed 0, default options. The trivial baselines use the same split:
each label's training rate with thresholds chosen on the selection split (multilabel), the training mean
(regression). Prints the markdown tables of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "text"


def sts_table(src: Path, out: Path) -> Path:
    """sentence1, sentence2, score from the first seven tab-separated fields of each line."""
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sentence1", "sentence2", "score"])
        for line in src.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            w.writerow([fields[5], fields[6], fields[4]])
    return out


def trivial(ds: object) -> dict[str, float]:
    from headstart.evaluate import compute_metrics

    y, tr, va, te = ds.y, ds.train_idx, ds.val_idx, ds.test_idx  # type: ignore[attr-defined]
    rate = y[tr].mean(0)
    decisions = ds.kind.decide(y[va], np.tile(rate, (len(va), 1))) if ds.kind.decides else None  # type: ignore[attr-defined]
    return compute_metrics(y[te], np.tile(rate, (len(te), 1)), ds.task, ds.classes, decisions)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="goemotions,sts")
    ap.add_argument("--strategies", default="linear,finetune")
    ap.add_argument("--out", default="/tmp/task-types-bench")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED}: the shared data is not here")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLCONFIGDIR", str(out / "mpl"))
    import headstart
    from headstart.data import load_data

    keys = {"goemotions": ("micro_f1", "macro_f1", "mean_average_precision", "subset_accuracy", "hamming_loss"),
            "sts": ("spearman", "pearson", "r2", "mae", "rmse")}
    for name in args.datasets.split(","):
        if name == "goemotions":
            data = dict(data=str(SHARED / "goemotions" / "dev.tsv"), test=str(SHARED / "goemotions" / "test.tsv"))
        else:
            data = dict(data=str(sts_table(SHARED / "sts_benchmark" / "sts-train.csv", out / "sts_train.csv")),
                        test=str(sts_table(SHARED / "sts_benchmark" / "sts-test.csv", out / "sts_test.csv")),
                        text_col=["sentence1", "sentence2"], label_col="score")
        ds = load_data(data["data"], **{k: v for k, v in data.items() if k != "data"})
        print(f"\n{name}: {ds.task}, {len(ds.classes)} {'labels' if ds.task == 'multilabel' else 'target(s)'}, "
              f"train / select / report {len(ds.train_idx)} / {len(ds.val_idx)} / {len(ds.test_idx)}; "
              f"task {ds.decided['task']['how']}")
        print("| method | " + " | ".join(keys[name]) + " | wall s |\n|---|" + "---|" * (len(keys[name]) + 1))
        rows = [("trivial (" + ("label rates" if ds.task == "multilabel" else "training mean") + ")", trivial(ds), 0.0)]
        for strategy in args.strategies.split(","):
            t0 = time.perf_counter()
            run = headstart.fit(**data, model="minilm", strategy=strategy, out=str(out / f"{name}-{strategy}"), overwrite=True,
                                cache_dir=str(out / "cache"))
            rows.append((strategy, run.metrics["test"], time.perf_counter() - t0))
        for label, m, wall in rows:
            cells = " | ".join("n/a" if m.get(k) is None or m[k] != m[k] else f"{m[k]:.3f}" for k in keys[name])
            print(f"| {label} | {cells} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
