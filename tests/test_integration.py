"""Integration on real data and real pretrained weights from ../shared (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headstart
from headstart.backbones import build_backbone
from tests.conftest import ROOT, SHARED, needs_shared

FACTORIES = ROOT / "benchmarks" / "factories.py"
MOBILENET = SHARED / "weights" / "mobilenetv1_025_imagenet" / "model_best.pth.tar"
HYMENOPTERA = SHARED / "images" / "hymenoptera"
SST2 = SHARED / "text" / "sst2"


@needs_shared("weights", "mobilenetv1_025_imagenet")
@needs_shared("images", "hymenoptera")
def test_inhouse_mobilenet_checkpoint_loads_exactly() -> None:
    """Through a py: factory, the legacy 'module.'-prefixed checkpoint recognises ants and bees (ImageNet 310/309)."""
    bb = build_backbone(f"py:{FACTORIES}:mobilenet_v1_025", weights=str(MOBILENET))
    ds = headstart.load_data(HYMENOPTERA)
    idx = ds.test_idx[::5]
    with torch.no_grad():
        bb.eval()
        logits = bb.source_head(bb.forward_features(bb.preprocess(train=False)([ds.items[i] for i in idx])))
    top5 = logits.topk(5, dim=1).indices.numpy()
    want = np.where(ds.y[idx] == ds.classes.index("ants"), 310, 309)
    hit = np.mean([w in t for w, t in zip(want, top5)])
    assert hit >= 0.5, hit  # random weights: ~0.005


@needs_shared("weights", "mobilenetv1_025_imagenet")
@needs_shared("images", "hymenoptera")
def test_hymenoptera_linear_with_inhouse_mobilenet() -> None:
    run = headstart.fit(HYMENOPTERA, model=f"py:{FACTORIES}:mobilenet_v1_025", weights=str(MOBILENET),
                        strategy="linear", out="runs/hym")
    assert run.metrics["data"]["n_test"] == 153  # val/ is the reported split, untouched by selection
    assert run.metrics["test"]["accuracy"] >= 0.85
    again = headstart.fit(HYMENOPTERA, model=f"py:{FACTORIES}:mobilenet_v1_025", weights=str(MOBILENET),
                          strategy="linear", out="runs/hym2")
    assert again.metrics["fit"]["features_cached"] is True
    assert again.metrics["test"] == run.metrics["test"]


@needs_shared("weights", "cifar10_resnets")
@pytest.mark.parametrize("name,file", [("cifar_resnet20", "resnet20-12fca82f.th"), ("cifar_resnet32", "resnet32-d509ac18.th")])
def test_cifar_resnet_checkpoints_load_every_tensor(name: str, file: str, recwarn) -> None:
    from headstart.backbones import load_state_dict_file

    sd = load_state_dict_file(SHARED / "weights" / "cifar10_resnets" / file)
    bb = build_backbone(f"py:{FACTORIES}:{name}", weights=str(SHARED / "weights" / "cifar10_resnets" / file))
    assert bb.num_features == 64 and bb.source_head.out_features == 10
    own = set(bb.state_dict()) | {f"net.linear.{k}" for k in ("weight", "bias")}
    assert {f"net.{k}" for k in sd} <= own


@needs_shared("text", "sst2")
def test_sst2_subset_with_minilm_linear() -> None:
    run = headstart.fit(SST2 / "train.tsv", test=str(SST2 / "dev.tsv"), model="minilm", strategy="linear",
                        train_size=600, out="runs/sst")
    d = run.metrics["data"]
    assert d["n_test"] == 872 and d["n_train"] + d["n_val"] == 600  # the selection split comes out of the 600
    assert run.metrics["test"]["accuracy"] >= 0.72
    preds = run.predict(["a wonderful , moving film", "a dull , lifeless mess"])
    assert [p["label"] for p in preds] == ["1", "0"]
