"""Domain adaptation benchmark (issue 19): source-only, dann, mmd and selftrain on real domain shifts.

    python benchmarks/domain_adaptation.py [--pairs books:kitchen,dvd:electronics,mnist:usps] [--seeds 3]
                                           [--out docs/benchmarks.md] [--work DIR]

Pairs (../shared/data):

* Amazon reviews (Blitzer et al. 2007), ``books:kitchen`` and ``dvd:electronics``: all 1,500 labeled source
  reviews; the target domain's 1,500 are split once (seed 0, stratified) into 1,000 unlabeled for adaptation
  and 500 held out, scored once at the end (``--target-eval``). Model ``minilm`` (all-MiniLM-L6-v2, shipped
  offline), ``--max-length 64 --freeze 5 --epochs 2``: the first 64 tokens of each review (title first), the
  top two transformer layers and the head adapt. A CPU budget (2 cores, 12 fits per pair), stated.
* ``mnist:usps``: a stratified 2,000 of the MNIST test set as labeled source; USPS ``zip.train`` (7,291)
  subsampled to 2,000 as unlabeled target, USPS ``zip.test`` (2,007) held out. Both 28x28 -> 32x32 grey
  pictures; ``scratch:cnn@32`` trained from scratch on the source (the usual LeNet-size protocol),
  ``--augment none --epochs 15``.

Every method runs ``--seeds`` seeds through the multi-seed pipeline (``headstart fit --seeds``): the table
gives the target accuracy mean ± std over the seeds, the distance before and after (the seed the label-free
DEV risk kept) and the wall time of all seeds. The oracle is ``finetune`` on the 1,000 (Amazon) / 2,000 (USPS)
target examples *with* their labels, scored on the same held-out target examples: an upper bound.
Needs ../shared/data. Nothing is copied into the project: the converted data live in the work folder.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import html
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from foundation import SHARED, Section
from foundation import run as run_cmd

AMAZON = SHARED / "text" / "amazon_multidomain_sentiment"
DIGITS = SHARED / "images" / "digits_mnist_usps"
METHODS = ("source-only", "dann", "mmd", "selftrain")
TEXT_FLAGS = ["--model", "minilm", "--max-length", "64", "--freeze", "5", "--epochs", "2"]
DIGIT_FLAGS = ["--model", "scratch:cnn@32", "--augment", "none", "--epochs", "15"]


# -- data: the shared files as tables and folders headstart reads ----------------------------------------
def amazon_reviews(domain: str) -> list[tuple[str, str]]:
    """(text, label) of a domain's pseudo-XML files: title + review text, entities decoded."""
    out = []
    for label in ("positive", "negative"):
        raw = (AMAZON / domain / f"{label}.review").read_text(encoding="utf-8")
        for rec in re.findall(r"<review>(.*?)</review>", raw, flags=re.S):
            title = re.search(r"<title>(.*?)</title>", rec, flags=re.S)
            body = re.search(r"<review_text>(.*?)</review_text>", rec, flags=re.S)
            text = " ".join(html.unescape(f"{title.group(1) if title else ''}. {body.group(1) if body else ''}").split())
            out.append((text, label))
    return out


def write_table(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def split_target(rows: list, n_adapt: int, seed: int = 0) -> tuple[list, list]:
    """A stratified split of the target domain: ``n_adapt`` for adaptation (its labels unused), the rest held out."""
    rng = np.random.default_rng(seed)
    labels = np.array([r[1] for r in rows])
    adapt: list[int] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        adapt.extend(idx[: round(n_adapt * len(idx) / len(rows))].tolist())
    keep = set(adapt)
    return [rows[i] for i in sorted(keep)], [r for i, r in enumerate(rows) if i not in keep]


def mnist() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DIGITS / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(DIGITS / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def usps(part: str) -> tuple[np.ndarray, np.ndarray]:
    """USPS 16x16 in [-1, 1], ink +1 -> uint8 with MNIST's convention (0 = background), resized to 28x28."""
    rows = [line.split() for line in gzip.open(DIGITS / "usps" / f"zip.{part}.gz", "rt") if line.strip()]
    labels = np.array([int(float(r[0])) for r in rows])
    small = ((np.array([[float(v) for v in r[1:]] for r in rows]).reshape(-1, 16, 16) + 1) / 2 * 255).round().astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(x).resize((28, 28), Image.BILINEAR)) for x in small]), labels


def write_digits(root: Path, images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> Path:
    for i in idx:
        d = root / str(labels[i])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(d / f"{i:05d}.png")
    return root


def stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out.append(idx[: round(n * len(idx) / len(labels))])
    return np.sort(np.concatenate(out))


def prepare(pair: str, data: Path) -> tuple[Path, Path, Path, list[str]]:
    """(labeled source, unlabeled target, held-out labeled target, model flags) for ``pair``."""
    src, tgt = pair.split(":")
    folder = data / pair.replace(":", "-")
    folder.mkdir(parents=True, exist_ok=True)
    if src in ("mnist", "usps"):
        (mi, ml), (ui, ul), (ti, tl) = mnist(), usps("train"), usps("test")
        source, target = ((mi, ml), (ui, ul)) if src == "mnist" else ((ui, ul), (mi, ml))
        s = write_digits(folder / "source", *source, stratified(source[1], 2000, 0))
        a = write_digits(folder / "target", *target, stratified(target[1], 2000, 1))
        held = (ti, tl) if src == "mnist" else (mi, ml)
        e = write_digits(folder / "target_test", *held, np.arange(len(held[1])) if src == "mnist"
                         else stratified(held[1], 2000, 2))
        return s, a, e, DIGIT_FLAGS
    adapt, held = split_target(amazon_reviews(tgt), 1000)
    return (write_table(folder / "source.csv", amazon_reviews(src)), write_table(folder / "target.csv", adapt),
            write_table(folder / "target_test.csv", held), TEXT_FLAGS)


# -- runs -----------------------------------------------------------------------------------------------
def fit(args: list[str], out: Path, env: dict[str, str]) -> tuple[dict, float]:
    """One `headstart fit` (all its seeds); a fit finished by an earlier, interrupted benchmark is reused."""
    if (out / "wall_seconds.txt").is_file():
        return json.loads((out / "metrics.json").read_text()), float((out / "wall_seconds.txt").read_text())
    resume = ["--resume"] if out.exists() else []
    metrics, wall = run_cmd(["fit", *args, "--out", str(out), *resume], env)
    (out / "wall_seconds.txt").write_text(f"{wall:.1f}")
    return metrics, wall


def mean_std(values: list[float]) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    return f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1):.1f}" if len(v) > 1 else (f"{100 * v[0]:.1f}" if len(v) else "n/a")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="books:kitchen,dvd:electronics,mnist:usps")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"))
    ap.add_argument("--work", default=None, help="work folder of an earlier, interrupted run (finished fits are reused)")
    args = ap.parse_args()
    sec = Section("headstart-da-")
    if args.work:
        sec.work = Path(args.work)
        sec.env["HEADSTART_CACHE_DIR"] = str(sec.work / "cache")
    sec.header("Domain adaptation (issue 19)", f"python benchmarks/domain_adaptation.py --pairs {args.pairs} --seeds {args.seeds}")
    results: dict[str, dict] = {}
    for pair in args.pairs.split(","):
        s, a, e, flags = prepare(pair, sec.work / "data")
        rows = {}
        for method in METHODS:
            m, wall = fit([str(s), *flags, "--strategy", method, "--unlabeled-target", str(a), "--target-eval", str(e),
                           "--seeds", str(args.seeds)], sec.work / pair.replace(":", "-") / method, sec.env)
            rec, seeds = m["adapt"], m["seeds"]
            rows[method] = {"target": [r["target_accuracy"] for r in seeds["rows"]],
                            "source_test": [r["test_accuracy"] for r in seeds["rows"]],
                            "kept": seeds["kept"], "kept_target": rec["target_eval"]["accuracy"],
                            "distance": rec["distance"], "wall": wall}
            print(pair, method, mean_std(rows[method]["target"]), f"{wall:.0f} s", flush=True)
        # the oracle: the adaptation examples with their labels, scored on the same held-out target examples
        m, wall = fit([str(a), *flags, "--strategy", "finetune", "--test", str(e), "--seeds", str(args.seeds)],
                      sec.work / pair.replace(":", "-") / "oracle", sec.env)
        rows["oracle"] = {"target": [r["test_accuracy"] for r in m["seeds"]["rows"]], "wall": wall}
        results[pair] = rows
        (sec.work / "results.json").write_text(json.dumps(results, indent=2))

    sec("Target accuracy (%) on the held-out target examples, mean ± std over seeds; the kept seed is the one with "
        "the lowest DEV risk (label-free), and its own target accuracy is shown apart. Distances: multi-kernel "
        "MMD^2 and proxy A-distance between source and target features of the kept seed, before -> after.")
    sec()
    sec("| pair | method | target acc. (mean ± std) | kept seed's target acc. | source held-out acc. | MMD^2 before -> after | A-distance before -> after | wall s (all seeds) |")
    sec("|---|---|---:|---:|---:|---|---|---:|")
    for pair, rows in results.items():
        for method, r in rows.items():
            if method == "oracle":
                sec(f"| {pair} | oracle (finetune on labeled target) | {mean_std(r['target'])} | | | | | {r['wall']:.0f} |")
                continue
            d = r["distance"]
            sec(f"| {pair} | {method} | {mean_std(r['target'])} | {100 * r['kept_target']:.1f} | {mean_std(r['source_test'])} | "
                f"{d['before']['mmd2_multi']:.4f} -> {d['after']['mmd2_multi']:.4f} | "
                f"{d['before']['a_distance']:.3f} -> {d['after']['a_distance']:.3f} | {r['wall']:.0f} |")
    sec()
    sec("Against source-only (difference of the mean target accuracy, points):")
    sec()
    for pair, rows in results.items():
        base = float(np.mean(rows["source-only"]["target"]))
        diffs = ", ".join(f"{m} {100 * (float(np.mean(rows[m]['target'])) - base):+.1f}" for m in ("dann", "mmd", "selftrain"))
        sec(f"- {pair}: {diffs}; oracle {100 * (float(np.mean(rows['oracle']['target'])) - base):+.1f}")
    sec.append_to(Path(args.out))


if __name__ == "__main__":
    main()
