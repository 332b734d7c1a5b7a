"""`headstart rank` and `headstart distance` end to end, on tiny real models and small data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import headstart
from headstart import transferability as tr
from headstart.backbones import build_backbone
from headstart.cli import app
from headstart.data import load_data, per_class_subset
from headstart.errors import ConfigError
from headstart.features import extract_items

from .backbones.tiny_factory import TinyNet
from .conftest import write_image_folder

TINY = f"py:{Path(__file__).parent / 'backbones' / 'tiny_factory.py'}:tiny"


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    path = tmp_path / "tiny.safetensors"
    state = TinyNet().state_dict()
    state["fc.weight"] *= 40  # a confident source classifier: LEEP/NCE then depend on its probabilities' exact scale
    save_file(state, str(path))
    return path


def test_rank_scores_every_candidate_on_the_training_part_only(tmp_path: Path, tiny_weights: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=15, classes=3)
    cands = [f"{TINY}@{tiny_weights}", TINY]
    df = headstart.rank(data, cands, metrics="logme,hscore,leep,nce,knn,ncti,proxy", proxy_epochs=1, out=tmp_path / "rk")
    assert list(df["rank"]) == [1, 2]
    assert df.attrs["recommended"] == df.index[0] and df.attrs["by"] == "ncti"
    assert df["ncti"].is_monotonic_decreasing
    with_head, without = df.loc[f"tiny@{tiny_weights.name}"], df.loc["tiny (random init)"]
    # LEEP / NCE need the source classifier: only the candidate loaded from weights has one
    assert with_head["source_classes"] == 5 and without["source_classes"] == 0
    assert with_head["leep"] <= 0 and with_head["nce"] <= 0
    assert math.isnan(without["leep"]) and math.isnan(without["nce"])
    for m in ("logme", "hscore", "knn", "proxy"):
        assert np.isfinite(df[m]).all()

    # the table's numbers are the transferability functions on the same features, train + selection split only
    ds = load_data(data, seed=0)
    pool = np.sort(np.concatenate([ds.train_idx, ds.val_idx]))
    feats = extract_items(build_backbone(TINY, weights=str(tiny_weights)), ds.items)[pool]
    assert with_head["logme"] == pytest.approx(tr.logme(feats, ds.y[pool]), rel=1e-4)
    assert with_head["hscore"] == pytest.approx(tr.hscore(feats, ds.y[pool]), rel=1e-3)
    # LEEP / NCE on the source classifier's probabilities, computed here from the weights file itself
    sd = load_file(str(tiny_weights))
    logits = feats.astype(np.float64) @ sd["fc.weight"].double().numpy().T + sd["fc.bias"].double().numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert with_head["leep"] == pytest.approx(tr.leep(probs, ds.y[pool]), rel=1e-4)
    assert with_head["nce"] == pytest.approx(tr.nce(probs, ds.y[pool]), rel=1e-4)
    saved = json.loads((tmp_path / "rk" / "rank.json").read_text())
    assert saved["n_examples"] == len(pool) < len(ds.items)
    assert [c["candidate"] for c in saved["candidates"]] == list(df.index)
    for f in ("rank.csv", "rank.png", "report.html"):
        assert (tmp_path / "rk" / f).stat().st_size > 0

    # a second ranking reuses the cached features; a later fit shows what was predicted
    again = headstart.rank(data, cands, metrics="logme", out=tmp_path / "rk2")
    assert (again["extract_s"] == 0).all()
    assert again.attrs["by"] == "logme"
    run = headstart.fit(data, model=TINY, weights=str(tiny_weights), strategy="linear")
    predicted = run.metrics["predicted"]
    assert predicted["of"] == 2 and predicted["by"] == "logme"
    assert predicted["scores"]["logme"] == pytest.approx(again.loc[f"tiny@{tiny_weights.name}", "logme"])
    assert "What headstart rank predicted, and what was obtained" in (run.path / "report.html").read_text()


def test_goal_decides_which_score_orders_the_table(tmp_path: Path, tiny_weights: Path) -> None:
    """``goal="linear"`` ranks by LogME even when it is not the first metric asked for, ``finetune`` by NCTI."""
    data = write_image_folder(tmp_path / "imgs", per_class=12, classes=3)
    cands = [f"{TINY}@{tiny_weights}", TINY, "scratch:cnn@32"]
    for goal, by in (("linear", "logme"), ("finetune", "ncti")):
        df = headstart.rank(data, cands, metrics="knn,ncti,logme", goal=goal)
        assert df.attrs["by"] == by
        assert list(df.index) == list(df[by].sort_values(ascending=False).index), df[["knn", "ncti", "logme"]]
        assert df.attrs["recommended_model"] == df.iloc[0]["model"]
    assert len(set(df["logme"])) == 3
    assert headstart.rank(data, cands).attrs["metrics"] == ["ncti", "logme"]  # auto: the goal's score and LogME


def test_rank_prefers_the_pretrained_text_encoder(text_csv: Path) -> None:
    df = headstart.rank(text_csv, ["minilm", "scratch:bow"], metrics="logme,knn,linear", goal="linear")
    assert df.index[0] == "minilm"
    assert df.loc["minilm", "logme"] > df.loc["scratch:bow", "logme"]
    assert df.loc["minilm", "knn"] >= df.loc["scratch:bow", "knn"]


def test_rank_scores_an_earlier_run_and_says_when_the_top_two_overlap(tmp_path: Path, tiny_weights: Path) -> None:
    """Fine-tuning-aware scores over a pool with a `run:` source model, a per-class sample, and the intervals."""
    data = write_image_folder(tmp_path / "imgs", per_class=16, classes=3)
    source = headstart.fit(write_image_folder(tmp_path / "other", per_class=10, classes=2, seed=5), model=TINY,
                           weights=str(tiny_weights), strategy="finetune", epochs=1, out=tmp_path / "source")
    twin = tmp_path / "twin.safetensors"  # the same weights under another name: a candidate it cannot tell apart
    twin.write_bytes(tiny_weights.read_bytes())
    cands = [f"run:{source.path}", f"{TINY}@{tiny_weights}", f"{TINY}@{twin}", TINY]
    names = "sfda,ncti,etran,transrate,gbc,pactran,leep"
    df = headstart.rank(data, cands, metrics=names, goal="linear", per_class=8, intervals=20, out=tmp_path / "rk",
                        trust_code=True)  # the run's backbone is built by this test's own factory
    by = df.attrs["by"]
    assert by == "sfda"  # goal linear: LogME when asked for, else the first metric
    assert df.loc[f"run:{source.path}", "source_classes"] == 2  # the earlier run's head is its source classifier
    assert np.isfinite(df.loc[f"run:{source.path}", "leep"])
    assert (df["low"] <= df[by] + 1e-12).all() and (df[by] <= df["high"] + 1e-12).all()
    assert (df["high"] > df["low"]).any()
    # the numbers are the transferability functions on the sampled examples (8 per class of the training part)
    ds = load_data(data, seed=0)
    saved = json.loads((tmp_path / "rk" / "rank.json").read_text())
    assert saved["n_examples"] == 24
    pool = np.sort(np.concatenate([ds.train_idx, ds.val_idx]))
    feats = {c: extract_items(build_backbone(m, weights=w), ds.items).astype(np.float64)
             for c, m, w in [(f"tiny@{tiny_weights.name}", TINY, str(tiny_weights)), ("tiny (random init)", TINY, None)]}
    scored = np.sort(per_class_subset(ds.strata(), pool, 8, np.random.default_rng(0 + 104729)))
    y = ds.y[scored]
    assert df.loc[f"tiny@{tiny_weights.name}", "sfda"] == pytest.approx(tr.sfda(feats[f"tiny@{tiny_weights.name}"][scored], y), rel=1e-6)
    assert df.loc[f"tiny@{tiny_weights.name}", "gbc"] == pytest.approx(tr.gbc(feats[f"tiny@{tiny_weights.name}"][scored], y), rel=1e-6)
    # NCTI and ETran are normalised over the pool: the two identical candidates tie, and the totals match
    assert df.loc[f"tiny@{tiny_weights.name}", "ncti"] == pytest.approx(df.loc[f"tiny@{twin.name}", "ncti"])
    assert df["etran"].max() <= 2.0 + 1e-9 and df["etran"].min() >= 0.0 - 1e-9
    # identical candidates are inside each other's interval: the ranking says the data cannot separate them
    twins = headstart.rank(data, [f"{TINY}@{tiny_weights}", f"{TINY}@{twin}"], metrics="sfda", out=tmp_path / "tw")
    assert twins.attrs["overlap"].startswith(f"tiny@{tiny_weights.name} and tiny@{twin.name} overlap") or \
        twins.attrs["overlap"].startswith(f"tiny@{twin.name} and tiny@{tiny_weights.name} overlap")
    assert "Fine-tuning both settles it" in twins.attrs["overlap"]
    assert "cannot tell them apart" in (tmp_path / "tw" / "report.html").read_text()
    # a pool score's interval: every candidate on the same half-samples, each round normalised over the pool
    pooled = headstart.rank(data, [f"{TINY}@{tiny_weights}", f"{TINY}@{twin}", TINY], metrics="ncti")
    assert pooled["low"].notna().all() and (pooled["low"] <= pooled["ncti"]).all()
    assert pooled.attrs["overlap"] is not None and "ncti" in pooled.attrs["overlap"]
    with pytest.raises(ConfigError, match="--per-class"):
        headstart.rank(data, [TINY], metrics="sfda", per_class=1)


def test_rank_cli_table_and_errors(tmp_path: Path, tiny_weights: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=10, classes=2)
    runner = CliRunner()
    res = runner.invoke(app, ["rank", str(data), "--models", f"{TINY}@{tiny_weights}", TINY, "--metric", "logme,hscore",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "recommended:" in res.output and "tiny (random init)" in res.output
    assert (tmp_path / "r" / "rank.json").is_file()
    res = runner.invoke(app, ["rank", str(data), "--models", f"{TINY}@{tiny_weights}", TINY, "--metric", "logme",
                              "--then-fit", "linear", "--out", str(tmp_path / "r2")])
    assert res.exit_code == 0, res.output
    assert "predicted by `headstart rank`" in res.output and "rank 1 of 2, logme" in res.output
    fitted = json.loads(next(Path("runs").glob("*-linear/metrics.json")).read_text())
    assert fitted["predicted"]["rank"] == 1 and fitted["fit"]["strategy"] == "linear"
    for args, msg in [
        (["--models", TINY, "--metric", "loggme"], "option --metric: unknown loggme"),
        (["--models", f"{TINY}@missing.pt"], "weights file 'missing.pt'"),
        (["--models", TINY, TINY], "listed twice"),
        (["--models", "nosuch:model"], "no known prefix"),
        (["--models", TINY, "--goal", "lora"], "option --goal"),
        (["--models", TINY, "--out", str(tmp_path / "r")], "already exists"),
    ]:
        res = runner.invoke(app, ["rank", str(data), *args])
        assert res.exit_code == 2 and msg in res.output, (args, res.output)


def test_distance_halves_vs_shifted_domain(tmp_path: Path) -> None:
    a = write_image_folder(tmp_path / "a", per_class=30, classes=2, seed=1)
    b = write_image_folder(tmp_path / "b", per_class=30, classes=3, seed=2)  # a third kind of picture: a shifted mix
    same = headstart.distance(a, model=TINY, out=tmp_path / "d0", permutations=100)
    other = headstart.distance(a, b, model=TINY, out=tmp_path / "d1", permutations=100)
    assert same["n_source"] == same["n_target"] == 30
    d0, d1 = same["distances"], other["distances"]
    assert d0["p_value_rbf"] > 0.05 and d0["p_value_linear"] > 0.05
    assert d1["p_value_rbf"] < 0.05
    assert d0["mmd2_rbf"] < d1["mmd2_rbf"]
    assert abs(d0["mmd2_multi"]) < 0.5 * d1["mmd2_multi"]
    assert d0["a_distance"] < d1["a_distance"]
    assert d0["linear_cka"] > 0.5
    for f in ("distance.json", "domains.png", "report.html"):
        assert (tmp_path / "d1" / f).stat().st_size > 0
    res = CliRunner().invoke(app, ["distance", str(a), str(b), "--model", TINY, "--permutations", "20",
                                   "--out", str(tmp_path / "d2")])
    assert res.exit_code == 0, res.output
    assert "p_value_rbf" in res.output and "domains.png" in res.output
    res = CliRunner().invoke(app, ["distance", str(a), "demo-text", "--model", TINY, "--out", str(tmp_path / "d3")])
    assert res.exit_code == 2 and "compare like with like" in res.output
