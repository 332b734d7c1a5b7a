"""What each strategy costs in memory and time (issue 22's strategy guide): peak resident memory of one fit.

    python benchmarks/strategy_costs.py [--out docs/benchmarks.md]

Each strategy is fitted once, in a process of its own, on two targets with their usual backbones:

* the sign-language digits (../shared/data, 2,062 images; 20% held out), MobileNetV1 x0.25 (ImageNet checkpoint),
  ``--epochs 2``;
* SST-2, a stratified 2,000 of train.tsv (dev.tsv reported), ``minilm``, ``--epochs 1``.

The peak resident set size is the process's own (``wait4``'s ``ru_maxrss``): Python, torch and the libraries
included. The first row, ``import only``, is a process that imports what a fit imports and stops: the floor every
fit stands on. The epochs are cut to keep the run short; time per epoch is what the guide compares.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from foundation import HEADSTART, MOBILENET, ROOT, SHARED, Section

STRATEGIES = ("linear", "finetune", "lp-ft", "gradual", "l2sp", "lora")
SIGN = SHARED / "images" / "sign_language_digits"
SST = SHARED / "text" / "sst2"
TARGETS = {
    "sign-language digits, MobileNetV1 x0.25, 2 epochs": [str(SIGN), *MOBILENET, "--epochs", "2"],
    "SST-2 (2,000 sentences), minilm, 1 epoch": [str(SST / "train.tsv"), "--test", str(SST / "dev.tsv"),
                                                "--train-size", "2000", "--model", "minilm", "--epochs", "1"],
}
IMPORTS = ("import headstart, torch, lightning, transformers, timm, sklearn, pandas, matplotlib; "
           "from headstart.tasks import fit")


def measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    a = ap.parse_args()
    emit = Section("strategy-costs")
    emit.header("What each strategy costs: peak memory and time per epoch", "python benchmarks/strategy_costs.py")
    _, floor = measured([sys.executable, "-c", IMPORTS], emit.env)
    emit(f"A process that only imports what a fit imports peaks at {floor:.0f} MB (the floor of every row).")
    emit()
    for target, args in TARGETS.items():
        emit(f"### {target}")
        emit()
        emit("| strategy | held-out accuracy | peak RSS MB | above the floor MB | wall s | train s |")
        emit("|---|---|---|---|---|---|")
        for strategy in STRATEGIES:
            out = emit.work / f"{target[:4]}-{strategy}"
            wall, peak = measured([HEADSTART, "fit", *args, "--strategy", strategy, "--out", str(out)], emit.env)
            m = json.loads((out / "metrics.json").read_text())
            train = m["fit"].get("train_seconds")
            emit(f"| {strategy} | {m['test']['accuracy']:.4f} | {peak:.0f} | {peak - floor:.0f} | {wall:.1f} | "
                 f"{'' if train is None else f'{train:.1f}'} |")
        emit()
    emit.append_to(a.out)


if __name__ == "__main__":
    main()
