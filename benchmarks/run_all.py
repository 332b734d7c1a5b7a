"""Speed benchmark (issue 7): headstart against the usual recipes, each baseline measured in the same run.

    python benchmarks/run_all.py [--only peak,recipe,loop,text,memory] [--out docs/benchmarks.md]

1. peak    fp32 and bf16 matmul GFLOP/s of this machine (the MFU yardstick).
2. recipe  the Keras-tutorial feature-extraction recipe in plain PyTorch (frozen MobileNetV1 x0.25 re-run every
           epoch on shear/zoom/flip-augmented images, flatten of the spatial features, a dense sigmoid/softmax
           head, Adam 1e-4, 10 epochs) vs `headstart fit --strategy linear`, on hymenoptera and on
           sign-language digits: accuracy and whole-command wall time.
3. loop    a minimal hand-written training loop (ImageFolder + transforms, AdamW, plain PyTorch) vs
           `headstart fit --strategy finetune`, same model, batch, threads, epochs: training samples/s; then
           headstart with bf16 autocast.
4. text    SST-2 sentences through `minilm`: extraction sentences/s with fixed 128-token padding vs headstart's
           length-sorted dynamic padding; fine-tuning samples/s of a plain Hugging Face Trainer vs headstart.
5. memory  peak RSS of streaming feature extraction for 20,000 vs 2,000 synthetic images.

Each part runs its baseline and headstart one after the other in this run; ratios, not absolute numbers, are
the result. Needs ../shared/data for parts 2-4, and `accelerate` for the Hugging Face Trainer baseline
(`pip install accelerate`; not a headstart dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from foundation import MOBILENET, ROOT, SHARED, Section
from foundation import run as run_cmd

HYM = SHARED / "images" / "hymenoptera"
SIGN = SHARED / "images" / "sign_language_digits"
SST = SHARED / "text" / "sst2"
WEIGHTS = SHARED / "weights" / "mobilenetv1_025_imagenet" / "model_best.pth.tar"
HERE = Path(__file__).resolve().parent
ROUNDS = 5  # interleaved rounds of the fine-tuning comparison

# headstart's CLI in a process that first imports it and the libraries it imports on first use (scikit-learn for
# the logistic regression and the metrics, matplotlib for the plots), then times the command itself: the "work"
# time, comparable to the recipe's time after its imports (torch, torchvision).
HEADSTART_TIMED = r'''
import json, sys, time
from headstart.cli import app
import sklearn.linear_model, sklearn.metrics, sklearn.model_selection, sklearn.preprocessing
import matplotlib.backends.backend_agg, matplotlib.figure
t0 = time.perf_counter()
try:
    app(ARGS)
except SystemExit as e:
    if e.code:
        raise
print(json.dumps({"seconds": time.perf_counter() - t0}))
'''

# -- baselines, each run as its own python process (imports included, like a headstart command) ---------------
RECIPE = r'''
import sys, time, json, torch, numpy as np
sys.path.insert(0, HERE)
from factories import mobilenet_v1_025
from torchvision import datasets, transforms as T
from torch.utils.data import DataLoader, Subset
t_start = time.perf_counter()  # work time: everything after the imports
torch.manual_seed(0)
net = mobilenet_v1_025()
state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
state = state.get("state_dict", state)
net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
net.eval()
for p in net.parameters():
    p.requires_grad_(False)
body = torch.nn.Sequential(net.stage1, net.stage2, net.stage3)  # spatial features [B, 256, 7, 7]
norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
train_tf = T.Compose([T.RandomResizedCrop(224, scale=(0.8, 1.0)), T.RandomAffine(0, shear=11), T.RandomHorizontalFlip(),
                      T.ToTensor(), norm])  # Keras: shear_range=0.2, zoom_range=0.2, horizontal_flip=True
test_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
if SPLIT == "folders":
    train = datasets.ImageFolder(f"{DATA}/train", train_tf)
    test = datasets.ImageFolder(f"{DATA}/val", test_tf)
else:  # the same held-out images headstart reports on
    full_train, full_test = datasets.ImageFolder(DATA, train_tf), datasets.ImageFolder(DATA, test_tf)
    paths = [p for p, _ in full_train.samples]
    held = set(HELD)
    train = Subset(full_train, [i for i, p in enumerate(paths) if p not in held])
    test = Subset(full_test, [i for i, p in enumerate(paths) if p in held])
classes = len(full_train.classes) if SPLIT != "folders" else len(train.classes)
out = 1 if classes == 2 else classes
head = torch.nn.Linear(256 * 7 * 7, out)
opt = torch.optim.Adam(head.parameters(), lr=1e-4)
dl = DataLoader(train, batch_size=32, shuffle=True)
for epoch in range(10):
    for x, y in dl:
        with torch.no_grad():
            f = body(x).flatten(1)
        logits = head(f)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits.view(-1), y.float()) if out == 1
                else torch.nn.functional.cross_entropy(logits, y))
        opt.zero_grad(); loss.backward(); opt.step()
correct = n = 0
with torch.no_grad():
    for x, y in DataLoader(test, batch_size=64):
        logits = head(body(x).flatten(1))
        pred = (logits.view(-1) > 0).long() if out == 1 else logits.argmax(1)
        correct += int((pred == y).sum()); n += len(y)
print(json.dumps({"accuracy": correct / n, "n_test": n, "seconds": time.perf_counter() - t_start}))
'''

LOOP = r'''
import sys, time, json, torch
sys.path.insert(0, HERE)
from factories import mobilenet_v1_025
from torchvision import datasets, transforms as T
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
net = mobilenet_v1_025()
state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
state = state.get("state_dict", state)
net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
net.fc = torch.nn.Linear(256, 2)
norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
geometry = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
t_once = time.perf_counter()
if MATCHED:  # headstart's data path by hand: decode and resize once, channels_last
    raw = datasets.ImageFolder(f"{DATA}/train", geometry)
    xs = torch.stack([x for x, _ in raw]); ys = torch.tensor([y for _, y in raw])
    train = TensorDataset(xs, ys)
    net = net.to(memory_format=torch.channels_last)
    prep = lambda x: norm(x.float() / 255).contiguous(memory_format=torch.channels_last)
else:  # the usual loop: ImageFolder decodes and resizes every image every epoch
    train = datasets.ImageFolder(f"{DATA}/train", T.Compose([geometry, T.ConvertImageDtype(torch.float32), norm]))
    prep = lambda x: x
once = time.perf_counter() - t_once
dl = DataLoader(train, batch_size=32, shuffle=True)
opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
net.train()
t0 = time.perf_counter()
for epoch in range(EPOCHS):
    for x, y in dl:
        loss = torch.nn.functional.cross_entropy(net(prep(x)), y)
        opt.zero_grad(); loss.backward(); opt.step()
seconds = time.perf_counter() - t0
print(json.dumps({"samples_per_second": len(train) * EPOCHS / seconds, "seconds": seconds, "once_seconds": once}))
'''

EXTRACT = r'''
import json, time, torch, numpy as np, resource
from transformers import AutoModel, AutoTokenizer
import headstart
from headstart.backbones.text import minilm_path
from headstart.features import extract
tok = AutoTokenizer.from_pretrained(minilm_path()); model = AutoModel.from_pretrained(minilm_path()).eval()
texts = [ln.split("\t", 1)[1].strip() for ln in open(SST_TRAIN, encoding="utf-8").read().splitlines()[1:N + 1]]
t0 = time.perf_counter()
with torch.inference_mode():
    for i in range(0, len(texts), 64):
        enc = tok(texts[i:i + 64], padding="max_length", truncation=True, max_length=128, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        _ = (h * m).sum(1) / m.sum(1)
fixed = time.perf_counter() - t0
bb = headstart.backbones.build_backbone("minilm")
t0 = time.perf_counter()
extract(bb, texts, "sst2-%d" % N, CACHE, batch_size=64)
dynamic = time.perf_counter() - t0
print(json.dumps({"fixed_per_s": len(texts) / fixed, "dynamic_per_s": len(texts) / dynamic}))
'''

TRAINER = r'''
import json, time, torch, numpy as np
from transformers import AutoTokenizer, AutoModelForSequenceClassification, Trainer, TrainingArguments, DataCollatorWithPadding
from headstart.backbones.text import minilm_path
rows = [ln.split("\t", 1) for ln in open(SST_TRAIN, encoding="utf-8").read().splitlines()[1:N + 1]]
tok = AutoTokenizer.from_pretrained(minilm_path())
model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
enc = tok([t for _, t in rows], truncation=True, max_length=256)
ds = [{"input_ids": i, "attention_mask": m, "labels": int(l)} for i, m, (l, _) in zip(enc["input_ids"], enc["attention_mask"], rows)]
args = TrainingArguments(output_dir=OUT, per_device_train_batch_size=32, num_train_epochs=1, learning_rate=1e-4, lr_scheduler_type="cosine",
                         warmup_steps=0.1, weight_decay=0.05, save_strategy="no", report_to=[], logging_strategy="no",
                         use_cpu=True, dataloader_num_workers=0, seed=0)
trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))
t0 = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - t0
print(json.dumps({"samples_per_second": len(rows) / seconds, "seconds": seconds}))
'''

MEMORY = r'''
import json, resource, time, numpy as np
from collections.abc import Sequence
import headstart
from headstart.backbones import build_backbone
from headstart.features import extract

class Synthetic(Sequence):  # images made on access, as a folder read lazily would give them
    def __len__(self): return N
    def __getitem__(self, i):
        return np.random.default_rng(i).integers(0, 255, (96, 96, 3), dtype=np.uint8)

bb = build_backbone("scratch:cnn")
t0 = time.perf_counter()
feats, _ = extract(bb, Synthetic(), "synthetic-%d" % N, CACHE, batch_size=64)
print(json.dumps({"n": N, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t0, "shape": list(feats.shape)}))
'''


def py(code: str, env: dict[str, str], **values: object) -> dict:
    """Run ``code`` in a fresh python with ``values`` bound as globals; its last stdout line is JSON."""
    head = "".join(f"{k} = {v!r}\n" for k, v in values.items())
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", head + code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="peak,recipe,loop,text,memory")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args()
    parts = a.only.split(",")
    emit = Section("headstart-bench-speed-")
    env, work = emit.env, emit.work
    emit.header("Speed benchmark", f"python benchmarks/run_all.py --only {a.only}")
    summary: list[str] = []
    if "peak" in parts:
        import torch

        sys.path.insert(0, str(ROOT / "src"))
        from headstart._perf import bf16_supported, matmul_peak

        native = bf16_supported()
        n_bf16 = 2048 if native else 512  # emulated bf16 runs ~1 GFLOP/s: a 2048 matmul would take minutes
        fp32, bf16 = matmul_peak(torch.float32, 2048, 2.0), matmul_peak(torch.bfloat16, n_bf16, 2.0)
        emit("### 5. Machine peak (square matmul, all cores)")
        emit()
        emit(f"fp32 (2048) **{fp32:.0f} GFLOP/s**, bf16 ({n_bf16}) **{bf16:.1f} GFLOP/s** ({bf16 / fp32:.2f}x; native bf16: "
             f"{'yes' if native else 'no, emulated'}). MFU figures in metrics.json are relative to the fp32 figure "
             "(the bf16 one for a bf16 fit).")
        emit()
        summary.append(f"| machine peak | fp32 {fp32:.0f} / bf16 {bf16:.1f} GFLOP/s | | bf16 {bf16 / fp32:.2f}x |")
    if "recipe" in parts:
        emit("### 1. Feature extraction: the Keras-tutorial recipe vs `headstart fit --strategy linear` (MobileNetV1 x0.25)")
        emit()
        emit("Work time: from the end of each side's library imports to the end of the command (the recipe imports "
             "torch and torchvision, then builds the model, reads the data, trains 10 epochs and tests; headstart's "
             "clock starts after its CLI, scikit-learn and matplotlib are imported, then does everything `headstart "
             "fit` does, report and plots included). Whole command: the process wall time, interpreter and all "
             "imports included (torchvision ~2 s, scikit-learn ~2 s, matplotlib ~0.7 s on this machine).")
        emit()
        emit("| data | recipe accuracy | headstart linear accuracy | recipe work s | headstart work s | **work speed-up** "
             "| recipe whole command s | headstart whole command s | whole-command speed-up |")
        emit("|---|---|---|---|---|---|---|---|---|")
        for name, data in (("hymenoptera", HYM), ("sign-language digits", SIGN)):
            out = work / f"linear-{data.name}"
            hs = py(HEADSTART_TIMED, env, ARGS=["fit", str(data), *MOBILENET, "--strategy", "linear", "--out", str(out)])
            m = json.loads((out / "metrics.json").read_text())
            if (data / "train").is_dir():
                base = py(RECIPE, env, HERE=str(HERE), WEIGHTS=str(WEIGHTS), DATA=str(data), SPLIT="folders", HELD=[])
            else:
                import headstart

                ds = headstart.load(out).reload_data()
                held = [str(Path(ds.refs[i]).resolve()) for i in ds.test_idx]
                base = py(RECIPE, env, HERE=str(HERE), WEIGHTS=str(WEIGHTS), DATA=str(data.resolve()), SPLIT="split", HELD=held)
            work_ratio, whole_ratio = base["seconds"] / hs["seconds"], base["wall"] / hs["wall"]
            emit(f"| {name} ({base['n_test']} held out) | {base['accuracy']:.4f} | {m['test']['accuracy']:.4f} | {base['seconds']:.1f} "
                 f"| {hs['seconds']:.1f} | **{work_ratio:.1f}x** | {base['wall']:.1f} | {hs['wall']:.1f} | {whole_ratio:.1f}x |")
            summary.append(f"| recipe vs linear, {name} | accuracy {base['accuracy']:.4f} vs {m['test']['accuracy']:.4f} | "
                           f"work {base['seconds']:.1f} s vs {hs['seconds']:.1f} s (whole command {base['wall']:.0f} s vs "
                           f"{hs['wall']:.0f} s, {whole_ratio:.1f}x) | **{work_ratio:.1f}x** |")
        emit()
    if "loop" in parts:
        emit("### 2. Fine-tuning: hand-written loops vs `headstart fit --strategy finetune` (hymenoptera, MobileNetV1 x0.25, "
             "batch 32, 3 epochs, no augmentation, fp32, all cores)")
        emit()
        common = ["fit", str(HYM), *MOBILENET, "--strategy", "finetune", "--epochs", "3", "--batch-size", "32",
                  "--val-fraction", "0", "--augment", "none", "--precision", "32"]
        # Interleaved rounds (usual, matched, headstart back to back): single ~10 s runs on this shared machine
        # moved by up to 12% from one run to the next, as much as the difference being measured. Each round's
        # ratio compares neighbours in time; the median over the rounds is the result.
        rounds = []
        for r in range(ROUNDS):
            naive = py(LOOP, env, HERE=str(HERE), WEIGHTS=str(WEIGHTS), DATA=str(HYM), EPOCHS=3, MATCHED=False)
            matched = py(LOOP, env, HERE=str(HERE), WEIGHTS=str(WEIGHTS), DATA=str(HYM), EPOCHS=3, MATCHED=True)
            m, _ = run_cmd([*common, "--overwrite", "--out", str(work / "ft-32")], env)
            rounds.append((naive, matched, m["fit"]))
        emit("| round | usual loop samples/s | matched loop samples/s | headstart samples/s | headstart / usual "
             "| headstart / matched | headstart MFU (fp32 peak) |")
        emit("|---|---|---|---|---|---|---|")
        sps = [(u["samples_per_second"], h["samples_per_second"], hs["samples_per_second"], hs.get("mfu", float("nan")))
               for u, h, hs in rounds]
        for i, (usual, hand, ours, mfu) in enumerate(sps, 1):
            emit(f"| {i} | {usual:.1f} | {hand:.1f} | {ours:.1f} | {ours / usual:.2f}x | {ours / hand:.2f}x | {100 * mfu:.1f}% |")
        vs_usual = statistics.median(ours / usual for usual, _, ours, _ in sps)
        vs_matched = statistics.median(ours / hand for _, hand, ours, _ in sps)
        emit(f"| **median** | | | | **{vs_usual:.2f}x** | **{vs_matched:.2f}x** | |")
        emit()
        emit("Usual loop: ImageFolder decodes and resizes every image every epoch, NCHW. Matched loop: the same plain "
             "PyTorch loop given headstart's data path (decoded and resized once, channels_last). headstart: `headstart "
             "fit --strategy finetune --augment none` (Lightning, its defaults, resumable seeding, epoch checkpoints).")
        emit()
        naive, matched, f = rounds[-1]
        emit(f"Samples/s count the training epochs only. The one-time decode+resize of the matched loop took "
             f"{matched['once_seconds']:.1f} s (about one of the usual loop's epochs: {naive['seconds'] / 3:.1f} s).")
        from headstart._perf import bf16_supported

        if bf16_supported():
            m, _ = run_cmd([*common[:-1], "bf16", "--out", str(work / "ft-bf16")], env)
            emit(f"With `--precision bf16`: {m['fit']['samples_per_second']:.1f} samples/s "
                 f"({m['fit']['samples_per_second'] / f['samples_per_second']:.2f}x fp32).")
        else:
            emit("`--precision bf16` not run: this CPU has no native bf16 (no AVX-512 BF16 / AMX); see the machine peak.")
        emit()
        summary.append(f"| finetune vs hand loop (median of {ROUNDS} interleaved rounds) | last round {f['samples_per_second']:.1f} vs "
                       f"{matched['samples_per_second']:.1f} (matched) / {naive['samples_per_second']:.1f} (usual) samples/s | | "
                       f"**{vs_matched:.2f}x** matched, **{vs_usual:.2f}x** usual |")
    if "text" in parts:
        emit("### 3. Text: SST-2 with `minilm`")
        emit()
        n = 5000
        r = py(EXTRACT, env, SST_TRAIN=str(SST / "train.tsv"), N=n, CACHE=str(work / "cache-text"))
        ratio = r["dynamic_per_s"] / r["fixed_per_s"]
        emit(f"Extraction of the first {n} sentences of train.tsv: fixed 128-token padding **{r['fixed_per_s']:.0f}** "
             f"sentences/s, headstart (length-sorted, dynamic padding) **{r['dynamic_per_s']:.0f}** sentences/s: **{ratio:.1f}x**.")
        emit()
        t = py(TRAINER, env, SST_TRAIN=str(SST / "train.tsv"), N=n, OUT=str(work / "hf-trainer"))
        (work / "sst2-head.tsv").write_text("\n".join((SST / "train.tsv").read_text(encoding="utf-8").splitlines()[: n + 1]) + "\n")
        m, _ = run_cmd(["fit", str(work / "sst2-head.tsv"), "--model", "minilm", "--strategy", "finetune", "--epochs", "1",
                        "--batch-size", "32", "--lr", "1e-4", "--val-fraction", "0", "--out", str(work / "ft-sst2")], env)
        hs = m["fit"]["samples_per_second"]
        emit(f"Fine-tuning 1 epoch on the same {n} sentences (batch 32, lr 1e-4, warm-up 0.1, weight decay 0.05): "
             f"Hugging Face Trainer **{t['samples_per_second']:.1f}** samples/s, headstart **{hs:.1f}** samples/s "
             f"({m['fit']['precision']}, MFU {100 * m['fit'].get('mfu', float('nan')):.1f}%): **{hs / t['samples_per_second']:.2f}x**.")
        emit()
        summary.append(f"| text extraction, dynamic vs fixed-128 | | | **{ratio:.1f}x** |")
        summary.append(f"| text fine-tuning, headstart vs HF Trainer | | | **{hs / t['samples_per_second']:.2f}x** |")
    if "memory" in parts:
        emit("### 4. Memory: streaming feature extraction (`scratch:cnn`, 96x96 synthetic images made on access)")
        emit()
        res = [py(MEMORY, env, N=n, CACHE=str(work / f"cache-mem-{n}")) for n in (2000, 20000)]
        emit("| images | peak RSS MB | seconds |")
        emit("|---|---|---|")
        for r in res:
            emit(f"| {r['n']:,} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} |")
        ratio = res[1]["peak_rss_mb"] / res[0]["peak_rss_mb"]
        emit()
        emit(f"10x the images, **{ratio:.2f}x** the peak memory (features go to a memory-mapped file batch by batch).")
        emit()
        summary.append(f"| peak RSS, 20,000 vs 2,000 images | {res[1]['peak_rss_mb']:.0f} vs {res[0]['peak_rss_mb']:.0f} MB | | **{ratio:.2f}x** |")
    emit("### Summary")
    emit()
    emit("| benchmark | figures | time | ratio |")
    emit("|---|---|---|---|")
    for line in summary:
        emit(line)
    emit.append_to(Path(a.out))


if __name__ == "__main__":
    os.environ.setdefault("HEADSTART_QUIET", "1")
    main()
