"""Every registered backbone family, through the same interface, with tiny real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart._trust import trusting
from headstart.backbones import build_backbone, list_backbones, rebuild_backbone, register_backbone
from tests.conftest import write_image_folder

FACTORY = Path(__file__).with_name("tiny_factory.py")


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT saved to disk, with MiniLM's tokenizer: an `hf:` model that needs no network."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from headstart.backbones.text import minilm_path

    d = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src-run")
    data = write_image_folder(root / "imgs", per_class=6)
    with pytest.MonkeyPatch.context() as mp:  # the cache of this fit only: later tests keep their own
        mp.setenv("HEADSTART_CACHE_DIR", str(root / "cache"))
        run = headstart.fit(data, model="scratch:cnn@32", strategy="linear", out=str(root / "run"), cv_folds=2)
    return run.path


CASES = {
    "timm": lambda hf, run: "timm:test_resnet",
    "hf": lambda hf, run: f"hf:{hf}",
    "minilm": lambda hf, run: "minilm",
    "py": lambda hf, run: f"py:{FACTORY}:tiny",
    "run": lambda hf, run: f"run:{run}",
    "scratch": lambda hf, run: "scratch:cnn@32",
}
EXTRA = ["scratch:bow"]


def test_every_registered_prefix_has_a_case() -> None:
    assert set(list_backbones()) == set(CASES)


def _items(modality: str) -> list:
    if modality == "text":
        return ["a short sentence", "a somewhat longer sentence about something else entirely", "hi"]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40 + 7 * i, 50, 3)).astype(np.uint8) for i in range(3)]


@pytest.mark.parametrize("prefix", sorted(CASES) + EXTRA)
def test_backbone_interface(prefix: str, tiny_hf_dir: Path, tiny_run_dir: Path, tmp_path: Path) -> None:
    model = CASES[prefix](tiny_hf_dir, tiny_run_dir) if prefix in CASES else prefix
    bb = build_backbone(model, pretrained=prefix != "timm")  # timm hub weights are unreachable offline
    items = _items(bb.modality)
    bb.eval()
    with torch.no_grad():
        feats = bb.forward_features(bb.preprocess(train=False)(items))
    assert feats.shape == (3, bb.num_features) and torch.isfinite(feats).all()
    with torch.no_grad():  # augmentation keeps the shape
        assert bb.forward_features(bb.preprocess(train=True, augment="standard")(items)).shape == feats.shape

    groups = bb.layer_groups()
    assert len(groups) >= 1 and all(any(True for _ in g.parameters()) for g in groups)
    grouped = {id(p) for g in groups for p in g.parameters()}
    total = list(bb.parameters())
    assert sum(id(p) in grouped for p in total) >= 0.9 * len(total)  # the groups cover the network

    fp = bb.fingerprint
    assert fp == bb.fingerprint
    with torch.no_grad():
        next(bb.parameters()).add_(1.0)
    assert bb.fingerprint != fp  # weights are part of the identity

    # A run rebuilds the architecture from its spec + saved assets, then loads its own weights.
    bb.save_assets(tmp_path / "assets")
    with trusting("yes"):  # a py: factory is imported again only when trusted (tests/test_trust.py)
        again = rebuild_backbone(bb.spec, tmp_path / "assets")
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in bb.state_dict().items()}


def test_duplicate_prefix_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("timm")(lambda *a, **k: None)


def test_unknown_prefix_names_the_choices() -> None:
    with pytest.raises(headstart.HeadstartError, match="no known prefix; use one of"):
        build_backbone("resnet18")


def test_py_factory_keeps_source_head_with_weights(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from tests.backbones.tiny_factory import TinyNet

    torch.manual_seed(3)
    net = TinyNet()
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}  # as saved from DataParallel
    save_file(sd, str(tmp_path / "w.safetensors"))
    bb = build_backbone(f"py:{FACTORY}:tiny", weights=str(tmp_path / "w.safetensors"))
    assert torch.equal(bb.source_head.weight, net.fc.weight)
    assert torch.equal(bb.net.stem[0].weight, net.stem[0].weight)
    x = torch.randn(2, 3, 32, 32)
    net.eval(), bb.eval()
    with torch.no_grad():
        assert torch.allclose(bb.source_head(bb.forward_features(x)), net(x), atol=1e-6)


def test_run_backbone_carries_the_earlier_runs_weights(tiny_run_dir: Path) -> None:
    run = headstart.load(tiny_run_dir)
    bb = build_backbone(f"run:{tiny_run_dir}")
    for (k, v), (k2, v2) in zip(run.backbone.state_dict().items(), bb.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert torch.equal(bb.source_head.fc.weight, run.head.fc.weight)


def test_timm_local_weights_and_offline_hub_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = timm.create_model("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    bb = build_backbone("timm:test_resnet", weights=str(tmp_path / "w.safetensors"))
    theirs = src.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in bb.net.state_dict().items())
    assert torch.equal(bb.source_head.weight, src.get_classifier().weight)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read at import time; fail fast, no network wait
    with pytest.raises(headstart.HeadstartError, match="--weights FILE for a local checkpoint, or --no-pretrained"):
        build_backbone("timm:test_resnet", pretrained=True)


def test_hf_run_reloads_from_its_own_folder(tiny_hf_dir: Path, text_csv: Path) -> None:
    """A text run carries its tokenizer/config: it loads and predicts without the source folder."""
    import shutil

    local = Path("tiny-model")
    shutil.copytree(tiny_hf_dir, local)
    run = headstart.fit(text_csv, model=f"hf:{local}", strategy="linear", out="runs/hf", cv_folds=3)
    before = run.predict_proba(["the coach and the team", "flour in the oven"])
    shutil.rmtree(local)
    again = headstart.load(run.path)
    assert np.allclose(again.predict_proba(["the coach and the team", "flour in the oven"]), before, atol=1e-6)


@pytest.mark.parametrize("model", ["minilm", "scratch:cnn@32", "timm:resnet18"])
def test_reinit_replaces_every_weight_matrix(model: str) -> None:
    """The `scratch` baseline really starts from random weights (transformers 5 skips `_init_weights`
    on modules loaded from a checkpoint: a silent no-op once made "scratch" a fine-tuned MiniLM)."""
    from headstart.backbones import build_backbone

    bb = build_backbone(model, pretrained=model == "minilm")  # no hub here: timm random init is the "before"
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    bb.reinit()
    kept = [k for k, v in bb.state_dict().items() if v.ndim >= 2 and torch.equal(v, before[k])]
    assert kept == []
