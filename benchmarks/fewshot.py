"""Few-shot benchmark (issue 18): `headstart fewshot` on TREC's fine classes and the sign-language digits.

    python benchmarks/fewshot.py [--datasets trec,sign] [--methods ...] [--episodes 600] [--shots 1,5] [--out /tmp/fewshot-bench]

trec: the 50 fine question classes of train_5500 + TREC_10 (one table), split by class
30 / 10 / 10 (seed 0), all-MiniLM-L6-v2, max length 32. sign: the 10 hand-sign digits,
5 meta-train / 5 meta-test classes, ImageNet MobileNetV1 x0.25 through its `py:` factory.
Every method is scored on the same meta-test episodes (5-way, 15 queries per class);
prints the markdown table that docs/benchmarks.md holds, with wall times.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"

SETTINGS = {
    # meta-training budget, the same for every trained method: 2 epochs of 100 episodes, lower layers frozen
    "trec": {"model": "minilm", "max_length": 32, "freeze": 4, "class_split": "0.6,0.2,0.2"},
    "sign": {"model": f"py:{HERE / 'factories.py'}:mobilenet_v1_025",
             "weights": str(SHARED / "weights" / "mobilenetv1_025_imagenet" / "model_best.pth.tar"),
             "freeze": 1, "class_split": "5,0,5"},
}
COMMON = {"epochs": 2, "train_episodes": 100, "inner_steps": 3, "seed": 0}


def trec_table(folder: Path) -> Path:
    """TREC as one table of (text, fine label); the reader's own split is not used by few-shot fits."""
    out = folder / "trec_fine.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for name in ("train_5500.label", "TREC_10.label"):
            for line in (SHARED / "text" / "trec" / name).read_text(encoding="latin-1").splitlines():
                label, _, text = line.partition(" ")
                w.writerow([text.strip(), label])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="trec,sign")
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--shots", default="1,5")
    ap.add_argument("--methods", default="prototypes,linear,protonet,maml,fomaml,anil")
    ap.add_argument("--out", default="/tmp/fewshot-bench")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED}: the shared data is not here")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLCONFIGDIR", str(out / "mpl"))
    from headstart.tasks.fewshot import fewshot

    print("| data | method | 5-way 1-shot | 5-way 5-shot | wall s (1 / 5) |\n|---|---|---|---|---|")
    for name in args.datasets.split(","):
        data = trec_table(out) if name == "trec" else SHARED / "images" / "sign_language_digits"
        t0 = time.perf_counter()
        rows = fewshot(str(data), methods=args.methods, shots=args.shots, episodes_n=args.episodes, out=out / name, overwrite=True,
                       trust_code=True, **SETTINGS[name], **COMMON)
        by = {(r["method"], r["shots"]): r for r in rows}
        for m in dict.fromkeys(r["method"] for r in rows):
            cells = [by.get((m, k)) for k in (1, 5)]
            acc = [f"{100 * c['accuracy']:.1f} ± {100 * c['ci95']:.1f}" if c else "" for c in cells]
            wall = " / ".join(f"{c['wall_seconds']:.0f}" if c else "-" for c in cells)
            print(f"| {name} | {m} | {acc[0]} | {acc[1]} | {wall} |", flush=True)
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s in all -->", flush=True)


if __name__ == "__main__":
    main()
