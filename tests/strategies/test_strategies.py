"""Every registered strategy fits real tiny models and writes a complete run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.config import FitConfig
from headstart.training.strategies import get_strategy, list_strategies, register_strategy
from tests.conftest import write_image_folder, write_text_table

RUN_FILES = ("config.yaml", "model.safetensors", "model.json", "labels.json", "metrics.json", "history.csv",
             "report.html", "plots/learning_curves.png", "plots/confusion_matrix.png")


def learns_its_classes(strategy: str) -> str:
    """A few-shot strategy is scored on classes it never trained on: two classes cannot hold that, its own
    tests do (tests/strategies/test_fewshot.py)."""
    if get_strategy(strategy).splits_by_class:
        pytest.skip("few-shot: trains on some classes, scored on others (test_fewshot.py)")
    if "binary" not in get_strategy(strategy).tasks:
        pytest.skip("several targets on one backbone: its own tests (test_multitask.py)")
    return strategy


def needs(strategy: str, folder: Path, modality: str, request: pytest.FixtureRequest) -> dict:
    """What a strategy takes besides data and model: `joint` needs labeled source data, `distill` a teacher run,
    domain adaptation unlabeled target data (one seed here: the seeds have their own test)."""
    if strategy in ("dann", "mmd", "selftrain", "source-only"):
        target = (write_text_table(folder / "target.csv", per_class=15, seed=8) if modality == "text"
                  else write_image_folder(folder / "target", per_class=10, seed=8))
        return {"unlabeled_target": str(target), "seeds": 1}
    if strategy == "distill":
        return {"teacher": request.getfixturevalue("teacher_runs")[modality]}
    if strategy != "joint":
        return {}
    if modality == "text":
        return {"source_data": str(write_text_table(folder / "source.csv", per_class=30, seed=7))}
    return {"source_data": str(write_image_folder(folder / "source", per_class=15, classes=3, seed=7))}


@pytest.mark.parametrize("strategy", list_strategies())
def test_strategy_learns_text(strategy: str, text_csv: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    learns_its_classes(strategy)
    # LoRA adapts linear layers: the bag-of-words net has none, a real transformer does
    model = "minilm" if strategy == "lora" else "scratch:bow"
    run = headstart.fit(text_csv, model=model, strategy=strategy, out=f"runs/{strategy}", cv_folds=3,
                        **needs(strategy, tmp_path, "text", request))
    for f in RUN_FILES:
        assert (run.path / f).is_file(), f
    assert run.metrics["test"]["accuracy"] >= 0.85  # topic words are disjoint: easy, but only if it learns
    # a selection-split score is reported only where that split was held out of the fitting (not linear's CV pool)
    assert ("val" in run.metrics) == (not get_strategy(strategy).fits_selection_split)
    assert ("cv_log_loss" in run.metrics["fit"]) == (strategy == "linear")
    again = headstart.load(run.path)
    assert again.predict(["the coach and the team scored a goal"])[0]["label"] == "sport"


@pytest.mark.parametrize("strategy", list_strategies())
def test_strategy_learns_images(strategy: str, tmp_path: Path, source_run: str, request: pytest.FixtureRequest) -> None:
    learns_its_classes(strategy)
    data = write_image_folder(tmp_path / "imgs", per_class=30)
    # a pre-trained tiny source, as every transfer strategy assumes; 15 epochs x 2 steps
    run = headstart.fit(data, model=f"run:{source_run}", strategy=strategy, out=f"runs/{strategy}", epochs=15, cv_folds=3,
                        **needs(strategy, tmp_path, "image", request))
    assert run.metrics["test"]["accuracy"] >= 0.75
    assert json.loads((run.path / "labels.json").read_text())["classes"] == ["left", "right"]


def test_duplicate_strategy_name_is_an_error() -> None:
    cls = type("Dup", (get_strategy("linear"),), {"name": "linear"})
    with pytest.raises(ValueError, match="already registered"):
        register_strategy(cls)


def test_finetune_freezes_lowest_groups_and_their_batchnorm(tmp_path: Path) -> None:
    from headstart.backbones import build_backbone

    data = write_image_folder(tmp_path / "imgs", per_class=10)
    headstart.fit(data, model="scratch:cnn@32", strategy="scratch", out="runs/src", epochs=2)
    before = build_backbone("run:runs/src")
    run = headstart.fit(data, model="run:runs/src", strategy="finetune", freeze=2, epochs=3, out="runs/ft")
    groups_before, groups_after = before.layer_groups(), run.backbone.layer_groups()
    for i, (g0, g1) in enumerate(zip(groups_before, groups_after)):
        same = all(torch.equal(a, b) for a, b in zip(g0.state_dict().values(), g1.state_dict().values()))
        assert same == (i < 2), f"group {i}: frozen={i < 2} but unchanged={same}"  # incl. BN running stats


def test_discriminative_learning_rates() -> None:
    from headstart.backbones import build_backbone
    from headstart.heads import make_head
    from headstart.training.strategies import FitContext
    from headstart.training.strategies.finetune import FineTune

    cfg = FitConfig(data="x", lr=1.0, layer_decay=0.5, head_lr_mult=4.0, freeze=1)
    bb = build_backbone("scratch:cnn@32")
    s = FineTune(cfg)
    ctx = FitContext(cfg=cfg, data=None, backbone=bb, head=make_head("binary", bb.num_features, 2), run_dir=Path("."),
                     cache_dir=Path("."))
    s.prepare(ctx)
    lrs = {g["name"]: g["lr"] for g in s.param_groups(ctx)}
    assert lrs == {"head": 4.0, "group1": 0.5**3, "group2": 0.5**2, "group3": 0.5}  # group0 frozen: no params


def test_same_seed_same_metrics(text_csv: Path) -> None:
    a = headstart.fit(text_csv, model="scratch:bow", strategy="scratch", out="runs/a", seed=3)
    b = headstart.fit(text_csv, model="scratch:bow", strategy="scratch", out="runs/b", seed=3)
    assert a.metrics["test"] == b.metrics["test"]
    assert (a.path / "history.csv").read_text().split("\n")[1].split(",")[:5] == \
        (b.path / "history.csv").read_text().split("\n")[1].split(",")[:5]


def test_linear_head_matches_sklearn_on_cached_features(text_csv: Path) -> None:
    """The folded standardisation + logistic regression reproduces sklearn's probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from headstart.features import extract

    run = headstart.fit(text_csv, model="minilm", strategy="linear", out="runs/lin", cv_folds=3)
    ds = headstart.load_data(text_csv)
    feats, info = extract(run.backbone, ds.items, ds.fingerprint())
    assert info["cached"]  # the fit already extracted them
    pool = np.concatenate([ds.train_idx, ds.val_idx])
    sc = StandardScaler().fit(feats[pool])
    clf = LogisticRegression(C=run.metrics["fit"]["C"], max_iter=3000).fit(sc.transform(feats[pool]), ds.y[pool])
    ours = run.predict_proba([ds.items[i] for i in ds.test_idx])
    assert np.allclose(ours, clf.predict_proba(sc.transform(feats[ds.test_idx])), atol=1e-3)


def test_gradual_takes_its_unfrozen_groups_from_a_checkpoint() -> None:
    """A resumed fit trains the groups its checkpoint had unfrozen, even where the schedule would have fewer
    (e.g. resumed with a slower --unfreeze-every): `load_state_dict` is what carries them."""
    from headstart.backbones import build_backbone
    from headstart.heads import make_head
    from headstart.training.strategies import FitContext
    from headstart.training.strategies.gradual import Gradual

    cfg = FitConfig(data="x", strategy="gradual", epochs=40, options={"start_unfrozen": 1, "unfreeze_every": 10})
    bb = build_backbone("scratch:cnn@32")
    ctx = FitContext(cfg=cfg, data=None, backbone=bb, head=make_head("binary", bb.num_features, 2), run_dir=Path("."),
                     cache_dir=Path("."))

    def trainable(strategy: Gradual) -> list[bool]:
        return [all(p.requires_grad for p in g.parameters()) for g in strategy.movable]

    fresh = Gradual(cfg)
    fresh.prepare(ctx)
    fresh.on_epoch_start(0, ctx)
    assert trainable(fresh) == [False, False, False, True]  # the schedule at epoch 0: the top group only
    resumed = Gradual(cfg)
    resumed.prepare(ctx)
    resumed.load_state_dict(fresh.state_dict() | {"unfrozen": 3})
    resumed.on_epoch_start(0, ctx)
    assert trainable(resumed) == [False, True, True, True]
    assert resumed.state_dict() == {"unfrozen": 3}
