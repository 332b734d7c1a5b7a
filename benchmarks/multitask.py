"""Multitask benchmark (issue 17): TREC's coarse (6) and fine (50) question classes, one shared MiniLM against
one MiniLM per target.

    python benchmarks/multitask.py [--seeds 0,1,2] [--weighting static] [--out /tmp/multitask-bench]

train_5500 (5,452 questions) to train, a selection split carved from it; TREC_10 (500) reported. Every fit uses
the defaults (all-MiniLM-L6-v2, 2 epochs, finetune's learning rates); `multitask` trains both heads on one
backbone with ``--task-weighting``, the baseline is two `finetune` fits, one per target. Prints the markdown
table of docs/benchmarks.md: held-out accuracy per target (mean ± std over the seeds), training seconds of
all the fits a seed needs, and the parameters that must be stored and run.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREC = HERE.parent.parent / "shared" / "data" / "text" / "trec"


def trec_table(src: Path, out: Path) -> Path:
    """text, coarse (``LOC``), fine (``LOC:city``) from a TREC label file."""
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "coarse", "fine"])
        for line in src.read_text(encoding="latin-1").splitlines():
            label, _, text = line.partition(" ")
            w.writerow([text.strip(), label.split(":")[0], label])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--weighting", default="static")
    ap.add_argument("--out", default="/tmp/multitask-bench")
    args = ap.parse_args()
    if not TREC.is_dir():
        sys.exit(f"{TREC}: the shared data is not here")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLCONFIGDIR", str(out / "mpl"))
    import headstart

    train, test = trec_table(TREC / "train_5500.label", out / "train.csv"), trec_table(TREC / "TREC_10.label", out / "test.csv")
    common = dict(test=str(test), text_col="text", model="minilm", cache_dir=str(out / "cache"), overwrite=True)
    rows: dict[str, list[dict[str, float]]] = {"multitask": [], "one model per target": []}
    params: dict[str, int] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        mt = headstart.fit(train, label_col=["coarse", "fine"], strategy="multitask", task_weighting=args.weighting, seed=seed,
                           out=str(out / f"multitask-{seed}"), **common)
        tasks = mt.metrics["test"]["tasks"]
        rows["multitask"].append({"coarse": tasks["coarse"]["accuracy"], "fine": tasks["fine"]["accuracy"],
                                  "train_s": mt.metrics["fit"]["train_seconds"]})
        params["multitask"] = sum(p.numel() for m in (mt.backbone, mt.head) for p in m.parameters())
        one = {}
        for target in ("coarse", "fine"):
            r = headstart.fit(train, label_col=target, strategy="finetune", seed=seed, out=str(out / f"{target}-{seed}"), **common)
            one[target] = r
        rows["one model per target"].append({t: one[t].metrics["test"]["accuracy"] for t in one}
                                             | {"train_s": sum(one[t].metrics["fit"]["train_seconds"] for t in one)})
        params["one model per target"] = sum(p.numel() for r in one.values() for m in (r.backbone, r.head) for p in m.parameters())
        print(f"seed {seed}: " + "; ".join(f"{k} {v[-1]}" for k, v in rows.items()), flush=True)

    def cell(vals: list[float]) -> str:
        return f"{statistics.fmean(vals):.4f} ± {statistics.stdev(vals) if len(vals) > 1 else 0.0:.4f}"

    print(f"\n| system ({args.weighting} weighting) | coarse accuracy | fine accuracy | train s per seed | parameters |")
    print("|---|---|---|---|---|")
    for name, rs in rows.items():
        print(f"| {name} | {cell([r['coarse'] for r in rs])} | {cell([r['fine'] for r in rs])} | "
              f"{statistics.fmean(r['train_s'] for r in rs):.0f} | {params[name]:,} |")


if __name__ == "__main__":
    main()
