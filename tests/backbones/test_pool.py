"""``--pool avgmax``: average + max of the last feature map, recorded in the run and rebuilt on load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.backbones import build_backbone, rebuild_backbone
from headstart.evaluate import compute_metrics

FACTORY = Path(__file__).with_name("tiny_factory.py")


def test_avgmax_is_the_average_and_the_max_of_the_last_map() -> None:
    torch.manual_seed(0)
    bb = build_backbone(f"py:{FACTORY}:tiny", pretrained=False).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        fmap = bb.net.blocks(bb.net.stem(x))
        bb.set_pool("avgmax")
        got = bb.forward_features(x)
    assert bb.num_features == 32 and bb.spec["pool"] == "avgmax"
    torch.testing.assert_close(got, torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1))


def test_timm_model_gets_timms_catavgmax_and_is_rebuilt_the_same(tmp_path: Path) -> None:
    bb = build_backbone("timm:test_resnet", pretrained=False)
    width = bb.num_features
    bb.set_pool("avgmax")
    assert bb.num_features == 2 * width
    again = rebuild_backbone(bb.spec, tmp_path)
    again.load_state_dict(bb.state_dict())
    x = torch.randn(2, 3, *bb.data_config["input_size"][1:])
    with torch.no_grad():
        torch.testing.assert_close(again.eval().forward_features(x), bb.eval().forward_features(x))


def test_a_network_without_a_global_average_pool_is_refused_with_the_way_out() -> None:
    bb = build_backbone(f"py:{FACTORY}:tiny_vit_like", pretrained=False)
    with pytest.raises(headstart.HeadstartError, match="--pool avg"):
        bb.set_pool("avgmax")
    assert bb.num_features == 16 and "pool" not in bb.spec  # left as it was
    with pytest.raises(headstart.HeadstartError, match="only available for image backbones"):
        build_backbone("scratch:bow").set_pool("avgmax")


def test_linear_defaults_to_avgmax_and_its_evaluation_matches_the_reloaded_model(image_folder: Path) -> None:
    run = headstart.fit(image_folder, model=f"py:{FACTORY}:tiny", strategy="linear", out="runs/lin", cv_folds=2,
                        pretrained=False)
    assert run.config["pool"] == "avgmax"
    assert json.loads((run.path / "model.json").read_text())["num_features"] == 32
    # the metrics came from the cached features; the reloaded model runs the backbone (with the rebuilt pool)
    ds = run.reload_data()
    probs = run.predict_proba([ds.items[i] for i in ds.test_idx])
    assert np.mean(probs.argmax(1) == ds.y[ds.test_idx]) == pytest.approx(run.metrics["test"]["accuracy"])
    assert run.metrics["test"]["log_loss"] == pytest.approx(
        compute_metrics(ds.y[ds.test_idx], probs, ds.task, ds.classes)["log_loss"], rel=1e-4)


def test_pool_choice_per_strategy_and_model(image_folder: Path) -> None:
    plain = headstart.fit(image_folder, model=f"py:{FACTORY}:tiny", strategy="linear", pool="avg", out="runs/avg",
                          cv_folds=2, pretrained=False)
    assert plain.config["pool"] == "avg" and plain.backbone.num_features == 16
    vit = headstart.fit(image_folder, model=f"py:{FACTORY}:tiny_vit_like", strategy="linear", out="runs/vit", cv_folds=2,
                        pretrained=False)
    assert vit.config["pool"] == "avg"  # auto: the model's own pooling when it has no average pool to replace
    with pytest.raises(headstart.HeadstartError, match="--pool avg"):
        headstart.fit(image_folder, model=f"py:{FACTORY}:tiny_vit_like", strategy="linear", pool="avgmax",
                      out="runs/vit2", cv_folds=2, pretrained=False)
    assert not Path("runs/vit2").exists()  # refused before any work: nothing left behind
    with pytest.raises(headstart.HeadstartError, match="option --pool"):
        headstart.fit(image_folder, model=f"py:{FACTORY}:tiny", pool="max", out="runs/bad")
