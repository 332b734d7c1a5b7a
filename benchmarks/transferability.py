"""Transferability benchmark (issues 3 and 24): does `headstart rank` predict what fine-tuning reaches?

Three targets, six candidate source models each, three seeds:

- sign-language digits (500 training images, stratified; 20% of the 2,062 held out per seed);
- hymenoptera (train/, 245 images; val/ reported);
- Amazon kitchen reviews (1,500, positive/negative; 20% held out per seed).

The image pools: the ImageNet MobileNetV1 x0.25, the CIFAR-10 ResNet-20 and ResNet-32 (in-house checkpoints
through `py:` factories), a randomly initialised MobileNet and ResNet-20, and a MobileNet that headstart
fine-tuned on the *other* image set (a `run:` folder: source training, then transfer). The text pool: MiniLM,
MiniLM fine-tuned by headstart on SST-2, on SMS spam, on TREC's coarse classes and on Amazon *book* reviews
(`run:` folders), and `scratch:bow`.

Phases (each result is kept in WORK/results.json, so a phase that stops can be run again and goes on):

    python benchmarks/transferability.py --phase fits     # sources, then fine-tune + linear probe of every candidate
    python benchmarks/transferability.py --phase rank     # `headstart rank` per target and seed, timed
    python benchmarks/transferability.py --phase report   # tables, Kendall tau, the time ratio -> docs/benchmarks.md

Fine-tuned accuracy = `headstart fit --strategy finetune` (defaults) on the reported split of the same seed;
linear = `--strategy linear`. Every command is the `headstart` executable (wall time includes start-up); the
children's CPU seconds are kept beside the wall time. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import sys
from pathlib import Path

from domain_adaptation import amazon_reviews, write_table
from foundation import ROOT, SHARED, Section, run

FACTORIES = ROOT / "benchmarks" / "factories.py"
WEIGHTS = SHARED / "weights"
SIGN = SHARED / "images" / "sign_language_digits"
HYM = SHARED / "images" / "hymenoptera"
MOBILENET = f"py:{FACTORIES}:mobilenet_v1_025"
RESNET20 = f"py:{FACTORIES}:cifar_resnet20"
RESNET32 = f"py:{FACTORIES}:cifar_resnet32"
IMAGENET_W = WEIGHTS / "mobilenetv1_025_imagenet" / "model_best.pth.tar"
R20_W = next((WEIGHTS / "cifar10_resnets").glob("resnet20-*.th"), None)
R32_W = next((WEIGHTS / "cifar10_resnets").glob("resnet32-*.th"), None)
SEEDS = ("0", "1", "2")


def tables(work: Path) -> dict[str, Path]:
    """The text tables headstart reads: Amazon kitchen (target) and books, TREC coarse, SST-2 and SMS subsets."""
    folder = work / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"kitchen": folder / "kitchen.csv", "books": folder / "books.csv", "trec": folder / "trec_coarse.csv",
           "sms": folder / "sms_spam.tsv"}
    if not out["sms"].is_file():  # the file has no extension; the same bytes as a .tsv
        out["sms"].write_bytes((SHARED / "text" / "sms_spam" / "SMSSpamCollection").read_bytes())
    if not out["kitchen"].is_file():
        write_table(out["kitchen"], amazon_reviews("kitchen"))
        write_table(out["books"], amazon_reviews("books"))
        rows = []
        for line in (SHARED / "text" / "trec" / "train_5500.label").read_text(encoding="latin-1").splitlines():
            label, _, text = line.partition(" ")
            rows.append((text.strip(), label.split(":")[0]))
        write_table(out["trec"], rows)
    return out


def sources(work: Path) -> dict[str, list[str]]:
    """`fit` arguments of the source models headstart trains for the `run:` candidates."""
    t = tables(work)
    text = ["--model", "minilm", "--strategy", "finetune", "--train-size", "2000"]
    return {
        "mobilenet-on-hymenoptera": [str(HYM / "train"), "--model", MOBILENET, "--weights", str(IMAGENET_W), "--strategy", "finetune"],
        "mobilenet-on-sign": [str(SIGN), "--model", MOBILENET, "--weights", str(IMAGENET_W), "--strategy", "finetune",
                              "--train-size", "1000"],
        "minilm-on-sst2": [str(SHARED / "text" / "sst2" / "train.tsv"), *text],
        "minilm-on-sms": [str(t["sms"]), *text],
        "minilm-on-trec": [str(t["trec"]), *text],
        "minilm-on-books": [str(t["books"]), *text],
    }


def targets(work: Path) -> dict[str, dict]:
    """Per target: its data arguments (shared by fit and rank) and its candidates (label -> model, weights)."""
    trained = lambda name: (f"run:{work / 'sources' / name}", None)  # noqa: E731
    images = {
        "MobileNetV1 x0.25 (ImageNet)": (MOBILENET, IMAGENET_W),
        "ResNet-20 (CIFAR-10)": (RESNET20, R20_W),
        "ResNet-32 (CIFAR-10)": (RESNET32, R32_W),
        "MobileNetV1 x0.25 (random init)": (MOBILENET, None),
        "ResNet-20 (random init)": (RESNET20, None),
    }
    return {
        "sign": {"title": "sign-language digits, 500 training images", "data": [str(SIGN), "--train-size", "500"],
                 "candidates": {**images, "MobileNet fine-tuned on hymenoptera (run:)": trained("mobilenet-on-hymenoptera")}},
        "hymenoptera": {"title": "hymenoptera (train/ 245 images, val/ reported)",
                        "data": [str(HYM / "train"), "--test", str(HYM / "val")],
                        "candidates": {**images, "MobileNet fine-tuned on sign digits (run:)": trained("mobilenet-on-sign")}},
        "kitchen": {"title": "Amazon kitchen reviews, 1,500 (positive/negative)", "data": [str(tables(work)["kitchen"])],
                    "candidates": {"MiniLM": ("minilm", None),
                                   "MiniLM fine-tuned on SST-2 (run:)": trained("minilm-on-sst2"),
                                   "MiniLM fine-tuned on SMS spam (run:)": trained("minilm-on-sms"),
                                   "MiniLM fine-tuned on TREC (run:)": trained("minilm-on-trec"),
                                   "MiniLM fine-tuned on Amazon books (run:)": trained("minilm-on-books"),
                                   "scratch:bow": ("scratch:bow", None)}},
    }


class Results:
    """WORK/results.json: one record per command, written after each, so a rerun skips what is done."""

    def __init__(self, work: Path):
        self.path = work / "results.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, key: str) -> dict | None:
        return self.data.get(key)

    def put(self, key: str, value: dict) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def headstart(args: list[str], env: dict[str, str]) -> dict:
    """Run one headstart command: its wall and children's CPU seconds, and metrics.json when it wrote one."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    metrics, wall = run(args, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "metrics": metrics}


def model_args(model: str, weights: Path | None) -> list[str]:
    # a run folder of a py: factory imports that factory: this script wrote both, so it trusts them
    return ["--model", model, *(["--weights", str(weights)] if weights else []), *(["--trust-code"] if model.startswith("run:") else [])]


def phase_fits(work: Path, env: dict[str, str], res: Results, only: list[str]) -> None:
    for name, args in sources(work).items():
        out = work / "sources" / name
        if res.get(f"source/{name}") is None:
            r = headstart(["fit", *args, "--out", str(out), "--overwrite"], env)
            res.put(f"source/{name}", {"wall": r["wall"], "accuracy": r["metrics"]["test"]["accuracy"]})
            print(f"source {name}: {r['metrics']['test']['accuracy']:.4f} in {r['wall']:.0f} s", flush=True)
    for tname, t in targets(work).items():
        if only and tname not in only:
            continue
        for label, (model, weights) in t["candidates"].items():
            jobs = [("linear", SEEDS[0])] + [("finetune", s) for s in SEEDS]
            for strategy, seed in jobs:
                key = f"fit/{tname}/{strategy}/{label}/{seed}"
                if res.get(key) is not None:
                    continue
                out = work / "fits" / tname / f"{strategy}-{hashlib.sha1(label.encode()).hexdigest()[:8]}-{seed}"
                r = headstart(["fit", *t["data"], *model_args(model, weights), "--strategy", strategy, "--seed", seed,
                               "--out", str(out), "--overwrite"], env)
                res.put(key, {"accuracy": r["metrics"]["test"]["accuracy"], "wall": r["wall"], "cpu": r["cpu"]})
                print(f"{tname} {strategy} {label} seed {seed}: {r['metrics']['test']['accuracy']:.4f} "
                      f"{r['wall']:.0f} s", flush=True)


FEATURE_SCORES = ["logme", "hscore", "leep", "nce", "knn", "linear", "sfda", "ncti", "etran", "transrate", "gbc", "pactran"]
# rank variants: name -> extra arguments (feature scores on every training example or a per-class sample; the proxy)
VARIANTS = {
    "features": ["--metric", ",".join(FEATURE_SCORES)],
    "features-50": ["--metric", ",".join(FEATURE_SCORES), "--per-class", "50"],
    "features-20": ["--metric", ",".join(FEATURE_SCORES), "--per-class", "20"],
    # what a user runs by default (`headstart rank DATA --models ...`): the recommending score alone, timed
    "default": [],
    "proxy-1x50": ["--metric", "proxy", "--proxy-epochs", "1", "--proxy-per-class", "50", "--intervals", "0"],
    "proxy-1x20": ["--metric", "proxy", "--proxy-epochs", "1", "--proxy-per-class", "20", "--intervals", "0"],
    "proxy-2x200": ["--metric", "proxy", "--intervals", "0"],
}


def phase_rank(work: Path, env: dict[str, str], res: Results, only: list[str], variants: list[str]) -> None:
    """`headstart rank` over each target's pool, per seed and variant, from a cold feature cache each time."""
    for tname, t in targets(work).items():
        if only and tname not in only:
            continue
        specs = [f"{m}@{w}" if w else m for m, w in t["candidates"].values()]
        for variant in variants:
            for seed in SEEDS:
                key = f"rank/{tname}/{variant}/{seed}"
                if res.get(key) is not None:
                    continue
                out = work / "rank" / tname / f"{variant}-{seed}"
                cold = {**env, "HEADSTART_CACHE_DIR": str(work / "rank-cache" / f"{tname}-{variant}-{seed}")}
                r = headstart(["rank", *t["data"], "--models", *specs, *VARIANTS[variant], "--seed", seed, "--trust-code",
                               "--out", str(out), "--overwrite"], cold)
                ranking = json.loads((out / "rank.json").read_text())
                res.put(key, {"wall": r["wall"], "cpu": r["cpu"], "by": ranking["by"], "overlap": ranking.get("overlap"),
                              "n_examples": ranking["n_examples"], "candidates": ranking["candidates"]})
                print(f"rank {tname} {variant} seed {seed}: {r['wall']:.0f} s", flush=True)


def _tau(scores: list[float | None], truth: list[float], weighted: bool = False) -> float:
    """Kendall's tau-b (or scipy's hyperbolic weighted tau) over the candidates that have a score."""
    from scipy.stats import kendalltau, weightedtau

    pairs = [(a, b) for a, b in zip(scores, truth) if a is not None and a == a]
    if len(pairs) < 3:
        return float("nan")
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    return float(weightedtau(x, y).statistic if weighted else kendalltau(x, y).statistic)


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.mean(xs) if xs else float("nan")


def _cell(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None or x != x else format(x, fmt)


def report(work: Path, res: Results, out: Path, a: argparse.Namespace) -> None:
    """Tables per target, Kendall tau of every score and variant, the time ratios; appended to ``out``."""
    emit = Section("headstart-bench-tr-")
    emit.header("Transferability benchmark: fine-tuning-aware ranking (issue 24)",
                "python benchmarks/transferability.py --phase fits; --phase rank; --phase report")
    emit("Fine-tuned accuracy: `headstart fit --strategy finetune` (defaults) of each candidate, on the reported split "
         "of the same seed as the ranking (seeds 0, 1, 2: each seed is its own split and its own ranking). Linear: "
         "`--strategy linear`, seed 0. `headstart rank` scores the training part only, from a cold feature cache, all "
         "six candidates in one command; its wall time is divided by the sum of the six fine-tuning commands' wall "
         "times of the same seed (both are whole `headstart` processes, start-up included).")
    emit()
    summary: dict[str, dict[str, dict[str, float]]] = {}  # variant/score -> target -> numbers
    ceilings: dict[str, float] = {}
    for tname, t in targets(work).items():
        labels = list(t["candidates"])
        ft = {lab: [res.get(f"fit/{tname}/finetune/{lab}/{s}") for s in SEEDS] for lab in labels}
        if any(r is None for rs in ft.values() for r in rs):
            emit(f"({tname}: fine-tuning results incomplete, skipped)")
            continue
        lin = {lab: (res.get(f"fit/{tname}/linear/{lab}/0") or {}).get("accuracy") for lab in labels}
        ft_acc = {s: [ft[lab][i]["accuracy"] for lab in labels] for i, s in enumerate(SEEDS)}
        ft_wall = {s: sum(ft[lab][i]["wall"] for lab in labels) for i, s in enumerate(SEEDS)}

        def scores_of(variant: str, seed: str) -> dict[str, dict] | None:
            r = res.get(f"rank/{tname}/{variant}/{seed}")
            if r is None:
                return None
            out_ = {}
            for lab, (model, weights) in t["candidates"].items():
                out_[lab] = next(c for c in r["candidates"] if c["model"] == model and c["weights"] == (str(weights) if weights else None))
            return out_

        emit(f"### {t['title']}")
        emit()
        metric_cols = [(v, m) for v in VARIANTS for m in (FEATURE_SCORES if v == "features" else ["proxy"] if v.startswith("proxy") else [])]
        metric_cols = [(v, m) for v, m in metric_cols if scores_of(v, SEEDS[0]) is not None]
        emit("| candidate | fine-tuned (seeds 0 / 1 / 2) | mean | linear | " + " | ".join(
            m if v == "features" else f"{m} {v[6:]}" for v, m in metric_cols) + " |")
        emit("|---|---|---|---|" + "---|" * len(metric_cols))
        for lab in labels:
            per = " / ".join(f"{r['accuracy']:.4f}" for r in ft[lab])
            vals = []
            for v, m in metric_cols:
                seeds_ = [scores_of(v, s) for s in SEEDS]
                vals.append(_cell(_mean([sc[lab].get(m) if sc and sc[lab].get(m) is not None else float("nan") for sc in seeds_])))
            emit(f"| {lab} | {per} | {_mean([r['accuracy'] for r in ft[lab]]):.4f} | {_cell(lin[lab])} | " + " | ".join(vals) + " |")
        emit()
        ceiling = [_tau(ft_acc[a], ft_acc[b]) for i, a in enumerate(SEEDS) for b in SEEDS[i + 1:]]
        ceilings[tname] = _mean(ceiling)
        emit("Scores are the mean over the three seeds' rankings. Fine-tuning all six: "
             + ", ".join(f"seed {s} {ft_wall[s]:.0f} s" for s in SEEDS) + ". How well one seed's fine-tuning predicts "
             "another's (Kendall tau between seeds' accuracies, the ceiling for any score): "
             + " / ".join(f"{c:.2f}" for c in ceiling) + f", mean {_mean(ceiling):.2f}.")
        emit()
        for v in VARIANTS:
            first = res.get(f"rank/{tname}/{v}/{SEEDS[0]}")
            names = ["proxy"] if v.startswith("proxy") else [first["by"]] if v == "default" and first else FEATURE_SCORES
            for m in names:
                key = m if v == "features" else f"{m} ({v})"
                taus, wtaus, ratios = [], [], []
                for s in SEEDS:
                    sc = scores_of(v, s)
                    if sc is None:
                        continue
                    vals = [sc[lab].get(m) for lab in labels]
                    taus.append(_tau(vals, ft_acc[s]))
                    wtaus.append(_tau(vals, ft_acc[s], weighted=True))
                    ratios.append(res.get(f"rank/{tname}/{v}/{s}")["wall"] / ft_wall[s])
                if not taus:
                    continue
                sc0 = scores_of(v, SEEDS[0])
                lin_tau = _tau([sc0[lab].get(m) for lab in labels], [lin[lab] for lab in labels]) if sc0 and all(
                    lin[lab] is not None for lab in labels) else float("nan")
                summary.setdefault(key, {})[tname] = {"tau": _mean(taus), "taus": taus, "wtau": _mean(wtaus),
                                                      "lin": lin_tau, "ratio": _mean(ratios)}
    emit("### Kendall tau against fine-tuned accuracy (mean over seeds 0-2), weighted tau, tau against the linear probe")
    emit()
    tnames = [tn for tn in targets(work) if any(tn in d for d in summary.values())]
    emit("| score | " + " | ".join(f"{tn}: tau (per seed) | weighted | vs linear | rank time / fine-tune" for tn in tnames)
         + " | mean tau |")
    emit("|---|" + "---|---|---|---|" * len(tnames) + "---|")
    for key, d in summary.items():
        cells = []
        for tn in tnames:
            x = d.get(tn)
            cells.append("n/a | n/a | n/a | n/a" if x is None else
                         f"{x['tau']:.2f} ({' / '.join(_cell(v, '.2f') for v in x['taus'])}) | {_cell(x['wtau'], '.2f')} | "
                         f"{_cell(x['lin'], '.2f')} | {100 * x['ratio']:.1f}%")
        emit(f"| {key} | " + " | ".join(cells) + f" | {_mean([d[tn]['tau'] for tn in tnames if tn in d]):.2f} |")
    emit()
    # which score a user would have been told to use, chosen without looking at the target it is judged on
    emit("Leave one target out: the feature score with the best mean tau on the other two targets, judged on the third:")
    emit()
    emit("| held-out target | chosen on the other two | its tau there | tau on the held-out target |")
    emit("|---|---|---|---|")
    feature_keys = [k for k in summary if k in FEATURE_SCORES]
    for tn in tnames:
        rest = [x for x in tnames if x != tn]
        best = max(feature_keys, key=lambda k: _mean([summary[k].get(x, {}).get("tau", float("nan")) for x in rest]))
        emit(f"| {tn} | {best} | {_mean([summary[best][x]['tau'] for x in rest if x in summary[best]]):.2f} | "
             f"{_cell(summary[best].get(tn, {}).get('tau'), '.2f')} |")
    emit()
    default = {k: v for k, v in summary.items() if k.endswith("(default)")}
    for key, d in default.items():
        emit(f"**The default ranking** (`headstart rank DATA --models ...`: {key.split()[0]} on at most 50 examples per "
             "class, 20 half-sample rounds for its interval), against the issue's goal of tau >= 0.6 at <= 5% of the "
             "time of fine-tuning every candidate:")
        emit()
        emit("| target | tau (mean of seeds) | weighted tau | seed-to-seed ceiling | time / fine-tune all |")
        emit("|---|---|---|---|---|")
        for tn in tnames:
            x = d.get(tn)
            if x:
                emit(f"| {tn} | {x['tau']:.2f} | {x['wtau']:.2f} | {ceilings.get(tn, float('nan')):.2f} | {100 * x['ratio']:.1f}% |")
        emit()
    emit("What the default said about its top two, seed 0 (the half-sample intervals):")
    emit()
    for tn in tnames:
        r = res.get(f"rank/{tn}/default/0")
        if r:
            emit(f"- {tn}: " + (r["overlap"] or f"{r['candidates'][0]['candidate']} first, its interval clear of the second's."))
    emit()
    emit.append_to(out)
    (work / "summary.json").write_text(json.dumps(summary, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=["fits", "rank", "report"], required=True)
    ap.add_argument("--work", default=str(ROOT / ".cache" / "bench-transferability"))
    ap.add_argument("--targets", default="", help="comma-separated subset of sign,hymenoptera,kitchen")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="rank variants for --phase rank")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED}: the shared data is not here")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HEADSTART_QUIET": "1", "HEADSTART_CACHE_DIR": str(work / "cache"),
           "MPLCONFIGDIR": str(work / "mpl")}
    res = Results(work)
    only = [x for x in a.targets.split(",") if x]
    if a.phase == "fits":
        phase_fits(work, env, res, only)
    elif a.phase == "rank":
        phase_rank(work, env, res, only, [v for v in a.variants.split(",") if v])
    else:
        report(work, res, Path(a.out), a)


if __name__ == "__main__":
    main()
