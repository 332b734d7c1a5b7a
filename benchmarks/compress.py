"""Distillation and export benchmark (issue 5).

1. Distillation: a teacher fine-tuned from the ImageNet MobileNetV1 x0.25 on
   ../shared/data/images/sign_language_digits (`headstart fit --strategy finetune`),
   then a student `scratch:cnn-w8` (8-16-32-64 channels, 64x64 input) trained two
   ways with the same seed, split and epochs: on the labels only (`--strategy
   scratch`) and by `headstart distill` (teacher's soft targets + labels); then
   the same with 20 labels per class, the rest of the training images given to
   `distill --unlabeled` (a teacher fine-tuned on the 20 labels per class only).
2. Export: the MobileNet teacher and a `minilm` SST-2 classifier (`linear` on a
   stratified 5,000-sentence subset of train.tsv, dev.tsv reported) through
   `headstart export --quantize int8` (`--force`, so that a refused int8 file is
   still measured; the refusal is reported). Latency of PyTorch fp32, ONNX fp32
   and ONNX int8 at batch 1 and batch 32, measured here one after the other on
   the same preprocessed inputs (preprocessing excluded), as ratios to PyTorch;
   file sizes; held-out accuracy of each from export.json.

    python benchmarks/compress.py [--only distill,unlabeled,export] [--out docs/benchmarks.md]

Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from foundation import MOBILENET, ROOT, SHARED, Section
from foundation import run as run_cmd

SIGN = str(SHARED / "images" / "sign_language_digits")
SST = SHARED / "text" / "sst2"
STUDENT = "scratch:cnn-w8"


def timed(fn, budget: float = 1.0) -> float:
    """Median milliseconds of ``fn()`` over repetitions filling ``budget`` seconds (after 3 warm-ups)."""
    for _ in range(3):
        fn()
    times: list[float] = []
    end = time.perf_counter() + budget
    while len(times) < 5 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def latencies(run_dir: Path, items: list, env: dict[str, str], rounds: int = 3) -> dict[str, dict[int, float]]:
    """ms per batch for PyTorch fp32 and each exported ONNX file, batches of 1 and 32 of ``items``.

    The engines are measured in turn, ``rounds`` times over, and each keeps its best median: on a shared
    machine one slow stretch then does not land on one engine only.
    """
    import os

    import torch

    os.environ.update({k: v for k, v in env.items() if k.startswith("HEADSTART")})
    import headstart
    from headstart.run import OnnxModel

    run = headstart.load(run_dir)
    record = json.loads((run_dir / "export" / "export.json").read_text())
    batcher = run.backbone.preprocess(train=False)
    batches = {1: batcher(items[:1]), 32: batcher(items[:32])}
    run.backbone.eval()

    def pytorch(b):
        with torch.inference_mode():
            return run.head.outputs(run.head(run.backbone.forward_features(b)))

    engines = {"PyTorch fp32": pytorch}
    for st in record["stages"]:
        model = OnnxModel(run_dir / "export" / st["file"], run.batcher)
        engines[st["file"]] = model.run_batch
    out: dict[str, dict[int, float]] = {k: {1: float("inf"), 32: float("inf")} for k in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            for bs, b in batches.items():
                out[name][bs] = min(out[name][bs], timed(lambda: fn(b)))
    return out


def export_table(emit: Section, name: str, run_dir: Path, items: list) -> None:
    record = json.loads((run_dir / "export" / "export.json").read_text())
    lat = latencies(run_dir, items, emit.env)
    torch_acc = record["pytorch_fp32"]["accuracy"]
    weights = (run_dir / "model.safetensors").stat().st_size / 1e6
    emit(f"**{name}** — checked on {record['checked_on']}")
    emit()
    emit("| model | file MB | held-out accuracy | class agreement with PyTorch | max abs diff | ms, batch 1 | ms, batch 32 "
         "| speed-up vs PyTorch, batch 1 | batch 32 |")
    emit("|---|---|---|---|---|---|---|---|---|")
    base = lat["PyTorch fp32"]
    emit(f"| PyTorch fp32 | {weights:.2f} (safetensors) | {torch_acc:.4f} | – | – | {base[1]:.2f} | {base[32]:.1f} | 1.00x | 1.00x |")
    for st in record["stages"]:
        t = lat[st["file"]]
        forced = " (kept with --force)" if st.get("forced") else ""
        emit(f"| {st['file']}{forced} | {st['bytes'] / 1e6:.2f} | {st['accuracy']:.4f} | {st['class_agreement']:.4f} | "
             f"{st['max_abs_diff']:.1e} | {t[1]:.2f} | {t[32]:.1f} | {base[1] / t[1]:.2f}x | {base[32] / t[32]:.2f}x |")
    emit()
    for st in record["stages"]:
        if "method" in st:
            emit(f"int8 method: {st['method']}.")
    emit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="distill,unlabeled,export")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--epochs", default="30", help="student epochs (both students)")
    a = ap.parse_args()
    parts = set(a.only.split(","))
    emit = Section("headstart-bench-cx-")
    env, work = emit.env, emit.work
    emit.header("Distillation and export benchmark", f"python benchmarks/compress.py --only {a.only}")
    teacher = work / "teacher"
    m_t, wall_t = run_cmd(["fit", SIGN, *MOBILENET, "--strategy", "finetune", "--out", str(teacher)], env)
    if "distill" in parts:
        emit("### Distillation: MobileNetV1 x0.25 teacher -> `scratch:cnn-w8` student, sign-language digits "
             f"(seed 0, {m_t['data']['n_test']} held out)")
        emit()
        emit(f"Teacher: `headstart fit sign_language_digits --model py:benchmarks/factories.py:mobilenet_v1_025 --weights "
             f".../model_best.pth.tar --strategy finetune` ({wall_t:.0f} s). Students, same seed, split and "
             f"`--epochs {a.epochs}`: `headstart fit ... --model {STUDENT} --strategy scratch` (labels only) and "
             f"`headstart distill TEACHER ... --student {STUDENT}` (T = 4, alpha = 0.9).")
        emit()
        m_s, wall_s = run_cmd(["fit", SIGN, "--model", STUDENT, "--strategy", "scratch", "--epochs", a.epochs,
                               "--out", str(work / "student-labels")], env)
        m_d, wall_d = run_cmd(["distill", str(teacher), SIGN, "--student", STUDENT, "--epochs", a.epochs,
                               "--out", str(work / "student-distilled")], env)
        rec = m_d["distill"]
        t, s = rec["teacher"], rec["student"]
        emit("| model | how trained | held-out accuracy | parameters | weights MB | ms / image (batch 1) | wall s |")
        emit("|---|---|---|---|---|---|---|")
        emit(f"| teacher: MobileNetV1 x0.25 | finetune from ImageNet | {t['accuracy']:.4f} | {t['parameters']:,} | "
             f"{t['file_mb']:.2f} | {t['latency_ms']:.2f} | {wall_t:.0f} |")
        emit(f"| student: {STUDENT} | labels only | {m_s['test']['accuracy']:.4f} | {s['parameters']:,} | {s['file_mb']:.2f} | "
             f"{s['latency_ms']:.2f} | {wall_s:.0f} |")
        emit(f"| student: {STUDENT} | distilled | {m_d['test']['accuracy']:.4f} | {s['parameters']:,} | {s['file_mb']:.2f} | "
             f"{s['latency_ms']:.2f} | {wall_d:.0f} |")
        emit()
        emit(f"The student has **{rec['size_ratio']:g}x** fewer parameters and runs {rec['speedup']:g}x faster per image; "
             f"distillation moves its held-out accuracy from {m_s['test']['accuracy']:.4f} to **{m_d['test']['accuracy']:.4f}** "
             f"(teacher {t['accuracy']:.4f}). The teacher ran once over the training images, before training (logits cached).")
        emit()
    if "unlabeled" in parts:
        emit("### Distillation with unlabeled images: 20 labels per class, the rest of the training images unlabeled")
        emit()
        import os

        os.environ.update({"HEADSTART_QUIET": "1"})
        import headstart

        full = headstart.load_data(SIGN, seed=0)
        few = headstart.load_data(SIGN, seed=0, labels_per_class=20)
        labeled = {few.refs[i] for i in few.train_idx}
        pool = work / "unlabeled"
        pool.mkdir(exist_ok=True)
        for i in [*full.train_idx, *full.val_idx]:  # never the held-out split
            ref = full.refs[i]
            if ref not in labeled:
                link = pool / f"{i}{Path(ref).suffix}"
                if not link.exists():
                    link.symlink_to(ref)
        n_pool = len(list(pool.iterdir()))
        emit(f"Same seed and held-out split as above. Teacher: MobileNetV1 x0.25 `finetune` on the {len(few.train_idx)} labeled "
             f"images only. Students `{STUDENT}`, `--epochs {a.epochs}`: labels only, and `headstart distill` with "
             f"`--unlabeled` = the other {n_pool} training images (no labels; the teacher's outputs only).")
        emit()
        t20 = work / "teacher-20"
        m_t20, wall_t20 = run_cmd(["fit", SIGN, *MOBILENET, "--strategy", "finetune", "--labels-per-class", "20", "--out", str(t20)], env)
        m_s20, wall_s20 = run_cmd(["fit", SIGN, "--model", STUDENT, "--strategy", "scratch", "--labels-per-class", "20",
                                   "--epochs", a.epochs, "--out", str(work / "student-20-labels")], env)
        m_d20, wall_d20 = run_cmd(["distill", str(t20), SIGN, "--student", STUDENT, "--labels-per-class", "20", "--epochs", a.epochs,
                                   "--unlabeled", str(pool), "--out", str(work / "student-20-distilled")], env)
        emit("| model | how trained | held-out accuracy | wall s |")
        emit("|---|---|---|---|")
        emit(f"| teacher: MobileNetV1 x0.25 | finetune, 20 labels/class | {m_t20['test']['accuracy']:.4f} | {wall_t20:.0f} |")
        emit(f"| student: {STUDENT} | 20 labels/class | {m_s20['test']['accuracy']:.4f} | {wall_s20:.0f} |")
        emit(f"| student: {STUDENT} | distilled: 20 labels/class + {m_d20['fit']['unlabeled_examples']} unlabeled | "
             f"{m_d20['test']['accuracy']:.4f} | {wall_d20:.0f} |")
        emit()
    if "export" in parts:
        import os

        os.environ.update({"HEADSTART_QUIET": "1", "HEADSTART_CACHE_DIR": env["HEADSTART_CACHE_DIR"]})
        import headstart

        emit("### Export: ONNX fp32 and int8 vs PyTorch fp32")
        emit()
        emit("`headstart export RUN --format onnx --quantize int8 --force`; latency = median ms per batch of already "
             "preprocessed inputs (PyTorch `inference_mode` vs onnxruntime CPU, both on all cores), the engines measured in "
             "turn three times over in this run, best median of each.")
        emit()
        run_cmd(["export", str(teacher), "--format", "onnx", "--quantize", "int8", "--force"], env)
        ds = headstart.load(teacher).reload_data()
        export_table(emit, "MobileNetV1 x0.25, sign-language digits (`finetune` teacher above)", teacher,
                     [ds.items[i] for i in ds.test_idx])
        sst = work / "sst2-linear"
        run_cmd(["fit", str(SST / "train.tsv"), "--model", "minilm", "--strategy", "linear", "--train-size", "5000",
                 "--test", str(SST / "dev.tsv"), "--out", str(sst)], env)
        run_cmd(["export", str(sst), "--format", "onnx", "--quantize", "int8", "--force"], env)
        ds = headstart.load(sst).reload_data()
        texts = [ds.items[i] for i in ds.test_idx]
        texts = sorted(texts, key=len)[len(texts) // 2 - 16: len(texts) // 2 + 16]  # 32 sentences of median length
        export_table(emit, "minilm (all-MiniLM-L6-v2) + linear head, SST-2 (5,000 train, dev.tsv)", sst, texts)
    emit.append_to(Path(a.out))


if __name__ == "__main__":
    main()
