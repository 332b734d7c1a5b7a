"""Fine-tuning toolbox benchmark (issue 4): the strategies side by side, and partial feature caching.

1. Partial feature caching: the same `finetune` run (MobileNetV1 x0.25 ImageNet on
   ../shared/data/images/sign_language_digits, ``--freeze 6 --augment none``, 3 epochs)
   with ``--cache-frozen no`` and ``--cache-frozen yes``, one after the other in this
   run: training samples/s of each and the ratio, the time to build the cache, accuracy.
2. `headstart compare` on the sign-language digits with the same MobileNet:
   scratch, linear, finetune, lp-ft, lora, gradual, l2sp at 5, 20 and all labels per class.
3. `headstart compare` on a stratified 5,000-sentence subset of SST-2 train.tsv with
   `minilm`, evaluated on dev.tsv (872), same strategies and budgets.

    python benchmarks/strategies.py [--only cache,sign,sst2] [--out docs/benchmarks.md] [--reuse WORK_DIR]

Runs the `headstart` command itself. ``--reuse`` points at the work folder of an
earlier, interrupted run: the comparisons continue with ``headstart compare --resume``
(finished runs are reused, missing ones fitted). Tables come from each comparison's compare.csv;
the data-efficiency plots are copied to docs/img/. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import time
from pathlib import Path

from foundation import HEADSTART, MOBILENET, ROOT, SHARED, Section
from foundation import run as run_cmd

SIGN = str(SHARED / "images" / "sign_language_digits")
SST = SHARED / "text" / "sst2"
STRATEGIES = "scratch,linear,finetune,lp-ft,lora,gradual,l2sp"


def compare(args: list[str], out: Path, env: dict[str, str]) -> tuple[list[dict[str, str]], float]:
    t0 = time.perf_counter()
    resume = ["--resume"] if out.exists() else []
    proc = subprocess.run([HEADSTART, "compare", *args, "--out", str(out), *resume], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"headstart compare {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    with open(out / "compare.csv", newline="") as f:
        return list(csv.DictReader(f)), time.perf_counter() - t0


def emit_compare(emit: Section, rows: list[dict[str, str]], wall: float, plot: Path, name: str) -> None:
    img = ROOT / "docs" / "img" / name
    img.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plot, img)
    emit("| strategy | labels/class | accuracy | macro F1 | wall s | trainable params | % of backbone |")
    emit("|---|---|---|---|---|---|---|")
    for r in rows:
        emit(f"| {r['strategy']} | {float(r['labels_per_class']):g} | {float(r['accuracy']):.4f} | {float(r['macro_f1']):.4f} | "
             f"{float(r['wall_seconds']):.1f} | {int(r['trainable_parameters']):,} | {float(r['trainable_percent']):.2f} |")
    emit()
    walls: dict[str, float] = {}
    for r in rows:
        walls[r["strategy"]] = walls.get(r["strategy"], 0.0) + float(r["wall_seconds"])
    emit("Wall time per strategy, all budgets: " + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items())
         + f"; all runs {sum(walls.values()):.0f} s (this invocation of compare: {wall:.0f} s).")
    emit()
    emit(f"![data efficiency](img/{name})")
    emit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="cache,sign,sst2")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--reuse", default=None, help="work folder of an earlier run to continue")
    a = ap.parse_args()
    parts = set(a.only.split(","))
    emit = Section("headstart-bench-st-")
    if a.reuse:
        emit.work = Path(a.reuse)
        emit.env["HEADSTART_CACHE_DIR"] = str(emit.work / "cache")
    env, work = emit.env, emit.work
    emit.header("Fine-tuning toolbox benchmark", f"python benchmarks/strategies.py --only {a.only}")
    if "cache" in parts:
        emit("### Partial feature caching: `finetune --freeze 6 --augment none --epochs 3`, MobileNetV1 x0.25 ImageNet, "
             "sign-language digits (seed 0)")
        emit()
        emit("| --cache-frozen | train samples/s | train s | cache build s | accuracy | wall s |")
        emit("|---|---|---|---|---|---|")
        speed = {}
        for mode in ("no", "yes"):
            m, wall = run_cmd(["fit", SIGN, *MOBILENET, "--strategy", "finetune", "--freeze", "6", "--augment", "none",
                               "--epochs", "3", "--cache-frozen", mode, "--out", str(work / f"cache-{mode}")], env)
            f = m["fit"]
            speed[mode] = f["samples_per_second"]
            emit(f"| {mode} | {f['samples_per_second']:.1f} | {f['train_seconds']:.1f} | {f.get('cache_frozen_seconds', 0):.1f} | "
                 f"{m['test']['accuracy']:.4f} | {wall:.1f} |")
        emit()
        emit(f"Training throughput with the cache: **{speed['yes'] / speed['no']:.2f}x** the uncached run "
             f"(what is cached: {m['fit'].get('cache_frozen')}).")
        emit()
    if "sign" in parts:
        emit("### `headstart compare` on sign-language digits, MobileNetV1 x0.25 ImageNet (seed 0, 20% held out: 413 images)")
        emit()
        emit(f"`headstart compare {SIGN} --strategies {STRATEGIES} --budgets 5,20,all --model py:benchmarks/factories.py:"
             "mobilenet_v1_025 --weights .../model_best.pth.tar` (every strategy at its defaults)")
        emit()
        out = work / "cmp-sign"
        rows, wall = compare([SIGN, "--strategies", STRATEGIES, "--budgets", "5,20,all", *MOBILENET], out, env)
        emit_compare(emit, rows, wall, out / "data_efficiency.png", "compare-sign-mobilenet.png")
    if "sst2" in parts:
        emit("### `headstart compare` on SST-2 (5,000-sentence stratified subset of train.tsv; dev.tsv, 872, reported), `minilm`")
        emit()
        emit(f"`headstart compare train.tsv --strategies {STRATEGIES} --budgets 5,20,all --test dev.tsv --train-size 5000 "
             "--model minilm` (budgets 5 and 20 are drawn per class from all of train.tsv; `all` = the 5,000)")
        emit()
        out = work / "cmp-sst2"
        rows, wall = compare([str(SST / "train.tsv"), "--strategies", STRATEGIES, "--budgets", "5,20,all", "--test",
                              str(SST / "dev.tsv"), "--train-size", "5000", "--model", "minilm"], out, env)
        emit_compare(emit, rows, wall, out / "data_efficiency.png", "compare-sst2-minilm.png")
    emit.append_to(Path(a.out))


if __name__ == "__main__":
    main()
