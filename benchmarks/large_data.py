"""Data larger than memory (issue 27): peak memory and wall time as the data grows, against the code before.

    python benchmarks/large_data.py [--sizes 2000,20000,100000] [--baseline-src DIR] [--only folders,tables,shared]
                                   [--strategies linear,finetune] [--table-sizes 2000,1000000] [--repeats 3]
                                   [--work DIR]

Parts:

* ``folders``: folders of 96x96 JPEGs in 10 classes (each class a coloured shape on noise), written by this
  script once (the smaller folders are hard links into the largest). ``headstart fit FOLDER --model scratch:cnn``
  with ``--strategy linear`` and with ``--strategy finetune --epochs 1``, each in a process of its own, every size
  starting with an empty cache (the first fit decodes; the second reuses what the first cached); then
  ``headstart predict`` of the linear run on every image of the folder.
* ``tables``: CSV tables of ``--table-sizes`` rows (4 topics, 8-40 words a text, each topic's words drawn more often
  in its own rows), written by this script; ``headstart fit TABLE --model scratch:bow --strategy linear``, every size
  with an empty cache.
* ``shared``: hymenoptera and the sign-language digits (../shared/data) with MobileNetV1 x0.25 (ImageNet),
  ``linear`` and ``finetune --epochs 2``, ``--repeats`` times per version, the versions alternating, every run with
  an empty cache: accuracy, peak memory, wall time, and training throughput from ``metrics.json`` (images per
  second of the training loop).

Each row is measured twice in the same run: with this checkout's ``src`` and with ``--baseline-src`` (another
checkout's ``src``, e.g. a ``git worktree`` of the commit before the change), when given. Peak resident memory is
the process's own high-water mark, measured by GNU time (``/usr/bin/time -f %M``), not by ``wait4`` on a child of
this script: Linux carries a parent's high-water mark into the child it forks, so every figure would start from
this script's own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from foundation import MOBILENET, ROOT, SHARED, Section

CLASSES = 10
SIDE = 96


def _write(args: tuple[Path, int]) -> None:
    from PIL import Image, ImageDraw

    root, i = args
    rng = np.random.default_rng(i)
    c = i % CLASSES
    img = Image.fromarray(rng.integers(0, 120, (SIDE, SIDE, 3), dtype=np.uint8))
    hue = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (200, 40, 200)][c % 5]
    x, y = rng.integers(8, SIDE - 48, 2)
    box = [int(x), int(y), int(x) + 40, int(y) + 40]
    (ImageDraw.Draw(img).ellipse if c < 5 else ImageDraw.Draw(img).rectangle)(box, fill=hue)
    img.save(root / f"c{c}" / f"{i:06d}.jpg", quality=90)


def folders(work: Path, sizes: list[int]) -> dict[int, Path]:
    """One folder per size; the largest written, the others hard links to its first images."""
    top = max(sizes)
    big = work / f"images-{top}"
    if not (big / "done").exists():
        for c in range(CLASSES):
            (big / f"c{c}").mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_write, [(big, i) for i in range(top)], chunksize=500))
        (big / "done").touch()
    out = {top: big}
    for n in sizes:
        if n == top:
            continue
        d = work / f"images-{n}"
        if not d.exists():
            for i in range(n):
                src = big / f"c{i % CLASSES}" / f"{i:06d}.jpg"
                (d / src.parent.name).mkdir(parents=True, exist_ok=True)
                os.link(src, d / src.parent.name / src.name)
        out[n] = d
    return out


WORDS = 2000  # the tables' vocabulary: w0 ... w1999; topic t favours words t*50 ... t*50+49


def table(work: Path, rows: int) -> Path:
    """A CSV of ``rows`` labeled texts in 4 topics, written once (seeded), in blocks of 100,000 rows."""
    path = work / f"table-{rows}.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(rows)
    words = np.array([f"w{i}" for i in range(WORDS)])
    part = path.with_suffix(".part")
    with open(part, "w") as fh:
        fh.write("text,label\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            topics = rng.integers(0, 4, n)
            for t in topics:
                k = int(rng.integers(8, 41))
                own = rng.random(k) < 0.3  # a third of the words from the topic's own 50
                ids = np.where(own, t * 50 + rng.integers(0, 50, k), rng.integers(0, WORDS, k))
                fh.write(f"{' '.join(words[ids])},topic{t}\n")
    part.rename(path)
    return path


def measured(args: list[str], env: dict[str, str]) -> tuple[float, float, dict]:
    """(wall seconds, peak resident MB, metrics.json) of one ``headstart`` process."""
    cmd = [sys.executable, "-m", "headstart", *args]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        peak_file, err_file = Path(tmp) / "peak", Path(tmp) / "err"
        # Measured by GNU time, a small process of its own: a child forked from this one would count this
        # process's memory in its own peak (Linux carries the parent's high-water mark across fork and exec).
        with open(err_file, "wb") as err:
            proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak_file), *cmd], env=env,
                                  stdout=subprocess.DEVNULL, stderr=err)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err_file.read_text()[-3000:]}")
        peak_mb = int(peak_file.read_text().split()[-1]) / 1024
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    return wall, peak_mb, json.loads((out / "metrics.json").read_text()) if out else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,20000,100000")
    ap.add_argument("--baseline-src", type=Path, help="another checkout's src folder, measured in the same run")
    ap.add_argument("--baseline-sizes", help="the sizes measured with --baseline-src (default: every size)")
    ap.add_argument("--only", default="folders,tables,shared")
    ap.add_argument("--strategies", default="linear,finetune", help="the strategies of the folders part")
    ap.add_argument("--table-sizes", default="2000,1000000", help="rows of the tables part")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each version on the shared data")
    ap.add_argument("--work", type=Path, help="keep the generated folders here (default: a new temp folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    base_sizes = [int(s) for s in (a.baseline_sizes or a.sizes).split(",")]
    emit = Section("large-data")
    work = a.work or emit.work
    work.mkdir(parents=True, exist_ok=True)
    versions = {"this change": str(ROOT / "src")}
    if a.baseline_src:
        versions = {"before": str(a.baseline_src.resolve()), **versions}
    emit.header("Data larger than memory: peak memory as the data grows", f"python benchmarks/large_data.py "
                f"--sizes {a.sizes}" + (" --baseline-src DIR" if a.baseline_src else "")
                + (f" --baseline-sizes {a.baseline_sizes}" if a.baseline_sizes else "") + f" --only {a.only}"
                + f" --strategies {a.strategies} --table-sizes {a.table_sizes} --repeats {a.repeats}")
    strategies = {"linear": ["linear"], "finetune": ["finetune", "--epochs", "1"]}
    strategies = [strategies[s] for s in a.strategies.split(",")]

    def env_for(src: str, cache: Path) -> dict[str, str]:
        return {**emit.env, "PYTHONPATH": src, "HEADSTART_CACHE_DIR": str(cache)}

    if "folders" in a.only:
        t0, fresh = time.perf_counter(), not (work / f"images-{max(sizes)}" / "done").exists()
        made = folders(work, sizes)
        written = f"written in {time.perf_counter() - t0:.0f} s" if fresh else "written by an earlier run (--work)"
        emit(f"96x96 JPEG folders, 10 classes, {written}. `scratch:cnn` (64x64 "
             "input). Each size and version starts with an empty cache; `linear` runs first, `finetune` reuses the "
             "images it cached (and so does `predict`).")
        emit()
        emit("| code | images | strategy | peak RSS MB | wall s | held-out accuracy | train images/s |")
        emit("|---|---:|---|---:|---:|---:|---:|")
        for n in sizes:
            for version, src in versions.items():
                if version == "before" and n not in base_sizes:
                    continue
                cache = work / f"cache-{version.replace(' ', '-')}-{n}"
                shutil.rmtree(cache, ignore_errors=True)
                for strategy in strategies:
                    out = work / f"run-{version.replace(' ', '-')}-{n}-{strategy[0]}"
                    shutil.rmtree(out, ignore_errors=True)
                    wall, peak, m = measured(["fit", str(made[n]), "--model", "scratch:cnn", "--strategy", *strategy,
                                              "--out", str(out)], env_for(src, cache))
                    emit(f"| {version} | {n:,} | {strategy[0]} | {peak:,.0f} | {wall:.1f} | "
                         f"{m['test']['accuracy']:.4f} | {m['fit'].get('samples_per_second') or ''} |")
                if ["linear"] in strategies:
                    wall, peak, _ = measured(["predict", str(work / f"run-{version.replace(' ', '-')}-{n}-linear"),
                                              str(made[n])], env_for(src, cache))
                    emit(f"| {version} | {n:,} | predict (the linear run, every image) | {peak:,.0f} | {wall:.1f} | | |")
        emit()
    if "tables" in a.only:
        emit("CSV tables of texts in 4 topics, written by this script. `scratch:bow` (a bag of words, 64 features), "
             "`linear`, every size and version with an empty cache.")
        emit()
        emit("| code | rows | MB on disk | peak RSS MB | wall s | held-out accuracy | head |")
        emit("|---|---:|---:|---:|---:|---:|---|")
        for n in [int(s) for s in a.table_sizes.split(",")]:
            path = table(work, n)
            for version, src in versions.items():
                tag = f"{version.replace(' ', '-')}-table-{n}"
                out, cache = work / f"run-{tag}", work / f"cache-{tag}"
                for old in (out, cache):
                    shutil.rmtree(old, ignore_errors=True)
                wall, peak, m = measured(["fit", str(path), "--model", "scratch:bow", "--strategy", "linear",
                                          "--out", str(out)], env_for(src, cache))
                emit(f"| {version} | {n:,} | {path.stat().st_size / 2**20:,.1f} | {peak:,.0f} | {wall:.1f} | "
                     f"{m['test']['accuracy']:.4f} | {m['fit'].get('head_sample', 'in memory')} |")
        emit()
    if "shared" in a.only and SHARED.is_dir():
        emit(f"Real data, MobileNetV1 x0.25 (ImageNet checkpoint), seed 0, {a.repeats} runs of each version, alternating "
             "(median shown), every run with an empty cache.")
        emit()
        emit("| data | strategy | code | held-out accuracy | peak RSS MB | wall s | train images/s (each run) |")
        emit("|---|---|---|---:|---:|---:|---|")
        for name in ("hymenoptera", "sign_language_digits"):
            for strategy in (["linear"], ["finetune", "--epochs", "2"]):
                got: dict[str, list[tuple[float, float, dict]]] = {v: [] for v in versions}
                for rep in range(a.repeats):
                    for version, src in versions.items():
                        tag = f"{version.replace(' ', '-')}-{name}"
                        out = work / f"run-{tag}-{strategy[0]}-{rep}"
                        for old in (out, work / f"cache-{tag}"):  # every run cold: nothing decoded or extracted before
                            shutil.rmtree(old, ignore_errors=True)
                        got[version].append(measured(["fit", str(SHARED / "images" / name), *MOBILENET, "--strategy",
                                                      *strategy, "--out", str(out)], env_for(src, work / f"cache-{tag}")))
                for version, runs in got.items():
                    accs = {f"{m['test']['accuracy']:.4f}" for _, _, m in runs}
                    speeds = [m["fit"].get("samples_per_second") for _, _, m in runs]
                    emit(f"| {name} | {strategy[0]} | {version} | {' / '.join(sorted(accs))} | "
                         f"{statistics.median(p for _, p, _ in runs):,.0f} | {statistics.median(w for w, _, _ in runs):.1f} | "
                         f"{', '.join(str(v) for v in speeds if v) or '-'} |")
        emit()
    emit.append_to(a.out)


if __name__ == "__main__":
    main()
