"""Foundation benchmark (issue 2): headstart's defaults on real data and real checkpoints.

Runs the ``headstart`` command itself (so the wall time includes start-up and data
loading) and reads each run's metrics.json:

1. hymenoptera + the in-house ImageNet MobileNetV1 x0.25 (`py:` factory): `linear`,
   then the same `linear` again (served from the feature cache);
2. the same with `finetune`, seeds 0, 1, 2 (mean +- std);
3. a stratified 5,000-sentence subset of SST-2 train with `minilm`, evaluated on
   dev.tsv: `linear` (seed 0) and `finetune` (every seed);
4. the demo table (`headstart demo`).

    python benchmarks/foundation.py [--only hym-linear,hym-finetune,sst2,demo] [--out docs/benchmarks.md]

Results are printed and written as a dated section of docs/benchmarks.md. Needs
../shared/data; never copies it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HEADSTART = str(Path(sys.executable).with_name("headstart"))
MOBILENET = ["--model", f"py:{ROOT / 'benchmarks' / 'factories.py'}:mobilenet_v1_025",
             "--weights", str(SHARED / "weights/mobilenetv1_025_imagenet/model_best.pth.tar")]


def run(args: list[str], env: dict[str, str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([HEADSTART, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"headstart {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    metrics = json.loads((out / "metrics.json").read_text()) if out and (out / "metrics.json").is_file() else {}
    return metrics, wall


class Section:
    """One dated section of docs/benchmarks.md: a scratch folder and headstart's environment for the
    runs, lines printed as they are emitted, appended to the file at the end."""

    def __init__(self, prefix: str):
        self.work = Path(tempfile.mkdtemp(prefix=prefix))
        self.env = {**os.environ, "HEADSTART_QUIET": "1", "HEADSTART_CACHE_DIR": str(self.work / "cache")}
        self.lines: list[str] = []

    def __call__(self, s: str = "") -> None:
        print(s, flush=True)
        self.lines.append(s)

    def header(self, title: str, command: str) -> None:
        """The section's dated title and the command that produced it, with this machine."""
        self(f"## {title} — {date.today().isoformat()}")
        self()
        self(f"Command: `{command}`. Machine: {machine()}.")
        self()

    def append_to(self, out: Path) -> None:
        previous = out.read_text() if out.exists() else "# Benchmarks\n\n"
        out.write_text(previous.rstrip("\n") + "\n\n" + "\n".join(self.lines) + "\n")
        print(f"\nwritten to {out}; runs in {self.work}")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.platform()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="hym-linear,hym-finetune,sst2,demo")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    parts = set(a.only.split(","))
    emit = Section("headstart-bench-")
    work, env = emit.work, emit.env
    emit(f"## Foundation benchmark — {date.today().isoformat()}")
    emit()
    emit(f"Command: `python benchmarks/foundation.py --only {a.only}`  ")
    emit(f"Machine: {machine()}  ")
    emit("Wall = the whole `headstart fit` command (start-up, data loading, fit, evaluation, report); "
         "fit = `metrics.json` `fit.wall_seconds`. Accuracy on the reported split only (hymenoptera val/, SST-2 dev).")
    emit()
    hym = str(SHARED / "images" / "hymenoptera")
    if "hym-linear" in parts:
        emit("### hymenoptera, MobileNetV1 x0.25 (ImageNet, in-house checkpoint), `linear`")
        emit()
        emit("| run | accuracy | wall s | fit s | features from cache |")
        emit("|---|---|---|---|---|")
        for label in ("first", "rerun"):
            m, wall = run(["fit", hym, *MOBILENET, "--strategy", "linear", "--out", str(work / f"hym-lin-{label}")], env)
            emit(f"| {label} | {m['test']['accuracy']:.4f} | {wall:.1f} | {m['fit']['wall_seconds']:.1f} | "
                 f"{m['fit']['features_cached']} |")
        emit()
    if "hym-finetune" in parts:
        emit("### hymenoptera, MobileNetV1 x0.25, `finetune` (defaults)")
        emit()
        emit("| seed | accuracy | wall s | fit s | samples/s |")
        emit("|---|---|---|---|---|")
        accs = []
        for s in a.seeds.split(","):
            m, wall = run(["fit", hym, *MOBILENET, "--strategy", "finetune", "--seed", s, "--out", str(work / f"hym-ft-{s}")], env)
            accs.append(m["test"]["accuracy"])
            emit(f"| {s} | {accs[-1]:.4f} | {wall:.1f} | {m['fit']['wall_seconds']:.1f} | {m['fit']['samples_per_second']} |")
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        emit(f"| **mean ± std** | **{statistics.mean(accs):.4f} ± {sd:.4f}** | | | |")
        emit()
    if "sst2" in parts:
        sst = SHARED / "text" / "sst2"
        emit("### SST-2, 5,000-sentence stratified subset of train.tsv, `minilm`, evaluated on dev.tsv (872)")
        emit()
        emit("| strategy | seed | accuracy | wall s | fit s |")
        emit("|---|---|---|---|---|")
        for strat, seeds in (("linear", ["0"]), ("finetune", a.seeds.split(","))):
            accs = []
            for s in seeds:
                m, wall = run(["fit", str(sst / "train.tsv"), "--test", str(sst / "dev.tsv"), "--train-size", "5000",
                               "--model", "minilm", "--strategy", strat, "--seed", s,
                               "--out", str(work / f"sst-{strat}-{s}")], env)
                accs.append(m["test"]["accuracy"])
                emit(f"| {strat} | {s} | {accs[-1]:.4f} | {wall:.1f} | {m['fit']['wall_seconds']:.1f} |")
            if len(accs) > 1:
                emit(f"| **{strat} mean ± std** | | **{statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f}** | | |")
        emit()
    if "demo" in parts:
        t0 = time.perf_counter()
        proc = subprocess.run([HEADSTART, "demo", "--out", str(work / "demo")], env=env, capture_output=True, text=True)
        emit(f"### `headstart demo` ({time.perf_counter() - t0:.0f} s in all)")
        emit()
        emit("```")
        emit(proc.stdout.strip())
        emit("```")
        emit()
    emit.append_to(Path(a.out))

if __name__ == "__main__":
    main()
