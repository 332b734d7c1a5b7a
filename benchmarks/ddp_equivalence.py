"""Two CPU processes (DDP, gloo) against one, on real data: same weights, same metrics, and the wall time (issue 21).

    python benchmarks/ddp_equivalence.py [--out docs/benchmarks.md]

Each case is fitted twice with the same command, seed and global batch, once with ``--devices 2``. Recorded:
the largest difference between any two weights of the two models, held-out accuracy and log-loss of both,
and the wall time of each command (on a 2-core machine the two processes share the cores, so this shows the
cost of the distribution, not a speed-up).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from foundation import ROOT, SHARED, Section

CASES = [
    ("SST-2 train, 2,500 labels per class, `scratch:bow`, `scratch`, 3 epochs", SHARED / "text" / "sst2" / "train.tsv",
     ["--model", "scratch:bow", "--strategy", "scratch", "--epochs", "3", "--labels-per-class", "2500"]),
    ("SST-2 dev (872), `minilm`, `finetune`, 2 epochs", SHARED / "text" / "sst2" / "dev.tsv",
     ["--model", "minilm", "--strategy", "finetune", "--epochs", "2"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args()
    emit = Section("headstart-ddp-")
    emit.header("Distributed training: two CPU processes against one (issue 21)", "python benchmarks/ddp_equivalence.py")
    emit("Same command, seed 0 and global batch (32) for both; `--devices 2` runs two processes (Lightning DDP, "
         "gloo), each training on half of every batch. Weight difference = the largest over all tensors.")
    emit()
    emit("| case | processes | held-out accuracy | log-loss | wall s | largest weight difference |")
    emit("|---|---:|---:|---:|---:|---:|")
    for name, data, args in CASES:
        runs = {}
        for devices in (1, 2):
            out = emit.work / f"{name.split(',')[0].replace(' ', '_')}-{devices}"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "headstart", "fit", str(data), "--out", str(out), "--seed", "0",
                            "--devices", str(devices), *args], env=emit.env, check=True, stdout=subprocess.DEVNULL)
            runs[devices] = (out, time.perf_counter() - t0)
        w1, w2 = (load_file(str(runs[d][0] / "model.safetensors")) for d in (1, 2))
        diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
        for d in (1, 2):
            m = json.loads((runs[d][0] / "metrics.json").read_text())
            assert m["fit"]["processes"] == d
            emit(f"| {name} | {d} | {m['test']['accuracy']:.4f} | {m['test']['log_loss']:.4f} | {runs[d][1]:.0f} | "
                 f"{'' if d == 1 else f'{diff:.1e}'} |")
    emit.append_to(Path(a.out))


if __name__ == "__main__":
    main()
