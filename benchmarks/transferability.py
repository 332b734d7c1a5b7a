"""Transferability benchmark (issue 3): does `headstart rank` predict what fine-tuning reaches?

On ../shared/data/images/sign_language_digits (stratified 80/20 split, seed 0):

1. `headstart rank` over four real candidates — the ImageNet MobileNetV1 x0.25, the
   CIFAR-10 ResNet-20 and ResNet-32 (in-house checkpoints through `py:` factories) and a
   randomly initialised MobileNetV1 — with every metric, from a cold feature cache;
2. `headstart fit --strategy finetune` of every candidate (each seed), and
   `--strategy linear` (seed 0, from the cache);
3. Kendall's tau-b of each metric against the mean fine-tuned accuracy and against the
   linear-probe accuracy, and the time to rank vs the time to fine-tune them all;
4. `headstart distance` between scikit-learn's digits and the sign-language digits, and
   between two halves of the sign-language digits (the null case).

    python benchmarks/transferability.py [--seeds 0,1] [--out docs/benchmarks.md]

Runs the `headstart` command itself (wall times include start-up). Results are printed
and appended as a dated section of docs/benchmarks.md. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path

from foundation import ROOT, SHARED, Section, machine
from foundation import run as run_cmd

SIGN = str(SHARED / "images" / "sign_language_digits")
FACTORIES = ROOT / "benchmarks" / "factories.py"
WEIGHTS = SHARED / "weights"
CANDIDATES = {
    "MobileNetV1 x0.25 (ImageNet)": (f"py:{FACTORIES}:mobilenet_v1_025", WEIGHTS / "mobilenetv1_025_imagenet" / "model_best.pth.tar"),
    "ResNet-20 (CIFAR-10)": (f"py:{FACTORIES}:cifar_resnet20", next((WEIGHTS / "cifar10_resnets").glob("resnet20-*.th"), None)),
    "ResNet-32 (CIFAR-10)": (f"py:{FACTORIES}:cifar_resnet32", next((WEIGHTS / "cifar10_resnets").glob("resnet32-*.th"), None)),
    "MobileNetV1 x0.25 (random init)": (f"py:{FACTORIES}:mobilenet_v1_025", None),
}
METRICS = ["logme", "hscore", "leep", "nce", "knn", "linear", "proxy"]


def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 3:
        return float("nan")
    return float(kendalltau([p[0] for p in pairs], [p[1] for p in pairs]).statistic)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args()
    seeds = a.seeds.split(",")
    emit = Section("headstart-bench-tr-")
    work, env = emit.work, emit.env

    specs = [f"{m}@{w}" if w else m for m, w in CANDIDATES.values()]
    t0 = time.perf_counter()
    run_cmd(["rank", SIGN, "--models", *specs, "--metric", "all", "--out", str(work / "rank")], env)
    rank_wall = time.perf_counter() - t0
    ranking = json.loads((work / "rank" / "rank.json").read_text())
    by_label = {c["candidate"]: c for c in ranking["candidates"]}
    rows = {}
    for name, (model, weights) in CANDIDATES.items():
        label = next(c for c, r in by_label.items() if r["model"] == model and r["weights"] == (str(weights) if weights else None))
        rows[name] = {"scores": by_label[label], "ft": [], "ft_wall": []}
        wflag = ["--weights", str(weights)] if weights else []
        m, _ = run_cmd(["fit", SIGN, "--model", model, *wflag, "--strategy", "linear", "--out", str(work / f"lin-{label}")], env)
        rows[name]["linear_acc"] = m["test"]["accuracy"]
        for s in seeds:
            t1 = time.perf_counter()
            m, _ = run_cmd(["fit", SIGN, "--model", model, *wflag, "--strategy", "finetune", "--seed", s,
                            "--out", str(work / f"ft-{label}-{s}")], env)
            rows[name]["ft_wall"].append(time.perf_counter() - t1)
            rows[name]["ft"].append(m["test"]["accuracy"])
            if s == seeds[0]:
                rows[name]["predicted"] = m.get("predicted")
        print(name, rows[name]["ft"], flush=True)

    dist = {}
    for key, args in (("digits vs sign-language", ["digits", SIGN]), ("sign-language, two halves", [SIGN])):
        model, weights = CANDIDATES["MobileNetV1 x0.25 (ImageNet)"]
        t1 = time.perf_counter()
        run_cmd(["distance", *args, "--model", model, "--weights", str(weights), "--out", str(work / f"dist-{len(args)}")], env)
        dist[key] = (json.loads((work / f"dist-{len(args)}" / "distance.json").read_text()), time.perf_counter() - t1)

    names = list(CANDIDATES)
    ft_mean = [statistics.mean(rows[n]["ft"]) for n in names]
    lin = [rows[n]["linear_acc"] for n in names]
    ft_total = sum(rows[n]["ft_wall"][0] for n in names)

    emit(f"## Transferability benchmark — {date.today().isoformat()}")
    emit()
    emit(f"Command: `python benchmarks/transferability.py --seeds {a.seeds}`  ")
    emit(f"Machine: {machine()}  ")
    emit("Data: ../shared/data/images/sign_language_digits (2,062 images, 10 classes), stratified 80/20 split, seed 0; "
         f"`headstart rank` scores the {ranking['n_examples']} training images only. Fine-tuned accuracy = "
         "`headstart fit --strategy finetune` (defaults) on the held-out 20%, mean over seeds "
         f"{a.seeds}; linear = `--strategy linear`.")
    emit()
    head = "| candidate | " + " | ".join(METRICS) + " | rank | linear acc | fine-tuned acc (per seed) | fine-tune s |"
    emit(head)
    emit("|" + "---|" * (len(METRICS) + 5))
    for n in names:
        sc = rows[n]["scores"]
        cells = " | ".join("n/a" if sc.get(m) is None else f"{sc[m]:.4f}" for m in METRICS)
        per = " / ".join(f"{x:.4f}" for x in rows[n]["ft"])
        emit(f"| {n} | {cells} | {sc['rank']} | {rows[n]['linear_acc']:.4f} | {statistics.mean(rows[n]['ft']):.4f} ({per}) | "
             f"{statistics.mean(rows[n]['ft_wall']):.0f} |")
    emit()
    emit("Kendall's tau-b of each score against the accuracies (4 candidates; LEEP/NCE over the 3 with a source classifier):")
    emit()
    emit("| score | tau vs fine-tuned accuracy | tau vs linear-probe accuracy |")
    emit("|---|---|---|")
    for m in METRICS:
        vals = [rows[n]["scores"].get(m) for n in names]
        mark = " (recommended)" if m == ranking["by"] else ""
        emit(f"| {m}{mark} | {kendall(vals, ft_mean):.2f} | {kendall(vals, lin):.2f} |")
    emit()
    emit(f"Time: `headstart rank` (4 candidates, every metric, cold cache, proxy included) {rank_wall:.0f} s; "
         f"fine-tuning all 4 once {ft_total:.0f} s: ratio {ft_total / rank_wall:.1f}x. "
         f"Without the proxy, the feature scores took {sum(by_label[c]['seconds'] - (by_label[c].get('proxy_s') or 0) for c in by_label):.0f} s "
         f"of the ranking (extraction included). Recommended: {ranking['recommended']} (by {ranking['by']}).")
    emit()
    emit("`headstart distance`, MobileNetV1 x0.25 (ImageNet) features, 200 permutations:")
    emit()
    keys = list(next(iter(dist.values()))[0]["distances"])
    emit("| pair | n | " + " | ".join(keys) + " | s |")
    emit("|" + "---|" * (len(keys) + 3))
    for k, (d, secs) in dist.items():
        emit(f"| {k} | {d['n_source']} / {d['n_target']} | " + " | ".join(f"{d['distances'][x]:.4g}" for x in keys) + f" | {secs:.0f} |")
    emit()
    emit.append_to(Path(a.out))
    (work / "results.json").write_text(json.dumps({"rows": rows, "rank_wall": rank_wall, "distance": {k: v[0] for k, v in dist.items()}},
                                                  indent=2, default=str))


if __name__ == "__main__":
    main()
